# shellcheck shell=bash
# Stand-in for moonfrp-templates.sh: nothing this project touches.
:
