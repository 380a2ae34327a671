package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/posener/complete"
	"github.com/willabides/kongplete"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// completing reports whether this process was started by a shell to
// complete a command line (see CompletionCmd): COMP_LINE is set, and the
// arguments are bash's (command, word, previous word) or fish's (none).
// Anything else is a normal command line, even with COMP_LINE in the
// environment, so that a script run from a completion function still acts.
func completing(args []string) bool {
	if os.Getenv("COMP_LINE") == "" {
		return false
	}
	return len(args) == 0 || (len(args) == 3 && filepath.Base(args[0]) == "moonfrp-bulk")
}

// completeLine prints the candidates for COMP_LINE, from the same kong model
// that parses command lines, with unit names and filter forms added.
func completeLine(parser *kong.Kong) int {
	code := 0
	kongplete.Complete(parser,
		kongplete.WithPredictor("unit", complete.PredictFunc(predictUnits)),
		kongplete.WithPredictor("filter", complete.PredictSet(filterForms()...)),
		kongplete.WithExitFunc(func(c int) { code = c }),
		kongplete.WithErrorHandler(func(err error) { fmt.Fprintf(os.Stderr, "moonfrp-bulk: completion: %v\n", err) }),
	)
	return code
}

// predictUnits lists MoonFRP services, short names, from the manager the
// line names (--user, or MOONFRP_BULK_USER), within a second: a shell
// waiting on a hung manager must not hang with it.
func predictUnits(a complete.Args) []string {
	user := os.Getenv("MOONFRP_BULK_USER") != ""
	for _, w := range a.All {
		user = user || w == "--user" || w == "--user=true"
	}
	path := os.Getenv("MOONFRP_SYSTEMCTL")
	if path == "" {
		path = "systemctl"
	}
	if fdFloor() != nil {
		return nil // no suggestions, rather than a crash in the shell
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	units, err := discover.All(ctx, systemctl.Manager{Path: path, User: user})
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(units))
	for _, u := range units {
		names = append(names, u.Short())
	}
	return names
}

// filterForms are the --filter values to offer: every fixed form whole,
// and the open ones up to their colon.
func filterForms() []string {
	forms := []string{"tag:", "name:", "status:down", "type:server", "type:client", "type:visitor",
		"tunnel:" + discover.TunnelDown, "config:" + discover.ConfigChanged, "config:" + discover.ConfigUnchanged, "last:" + discover.LastFailed, "last:" + discover.LastNotStarted, "last:" + discover.LastUnfinished}
	for _, s := range discover.StatusStates() {
		forms = append(forms, "status:"+s)
	}
	for _, s := range frp.States {
		forms = append(forms, "tunnel:"+string(s))
	}
	sort.Strings(forms)
	return forms
}

// CompletionCmd prints a shell's completion script.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
	Bin   string `placeholder:"PATH" help:"The binary the script runs to complete (default: this one). Packages set /usr/bin/moonfrp-bulk."`
}

// Help gives completion --help its examples.
func (c *CompletionCmd) Help() string {
	return "The script runs moonfrp-bulk itself to complete commands, flags, unit names and --filter forms.\n\n" +
		"Examples:\n" +
		"  source <(moonfrp-bulk completion bash)      # this shell; add it to ~/.bashrc to keep it\n" +
		"  moonfrp-bulk completion bash > /etc/bash_completion.d/moonfrp-bulk\n" +
		"  moonfrp-bulk completion fish > ~/.config/fish/completions/moonfrp-bulk.fish"
}

// Run prints the script.
func (c *CompletionCmd) Run(a *app) error {
	bin := c.Bin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return &exitError{exitCannotRun, fmt.Sprintf("completion: cannot find this binary (%v); give it with --bin", err)}
		}
		bin = exe
	}
	if !filepath.IsAbs(bin) || strings.Trim(bin, safePathChars) != "" {
		// zsh's bashcompinit evaluates the command it is given: only
		// characters that no shell reads as syntax.
		return usageErr("completion: --bin must be an absolute path of letters, digits and /._+-, got %q (give another with --bin)", bin)
	}
	fmt.Fprint(a.streams.Out, strings.ReplaceAll(completionScripts[c.Shell], "@BIN@", bin))
	return nil
}

// safePathChars are the characters a binary's path may have in a script.
const safePathChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+-"

// completionScripts call the binary with COMP_LINE and COMP_POINT set, as
// bash's `complete -C` does. bash splits words at ':' and '=' (its
// COMP_WORDBREAKS) and replaces only the piece after the last of them,
// while the binary answers with the whole value after '=': the bash
// function hands back only what follows the part already typed.
var completionScripts = map[string]string{
	"bash": `# moonfrp-bulk completion for bash: source it, or install it in
# /usr/share/bash-completion/completions/moonfrp-bulk.
_moonfrp_bulk() {
    local cur=${COMP_WORDS[COMP_CWORD]} word keep candidate
    local -a candidates=()
    word=${COMP_LINE:0:COMP_POINT}
    word=${word##*[[:space:]]}
    word=${word##*=}
    keep=${word%"$cur"}
    mapfile -t candidates < <(COMP_LINE="$COMP_LINE" COMP_POINT="$COMP_POINT" '@BIN@' moonfrp-bulk "$cur" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null)
    COMPREPLY=()
    for candidate in "${candidates[@]}"; do
        COMPREPLY+=("${candidate#"$keep"}")
    done
}
complete -o nospace -F _moonfrp_bulk moonfrp-bulk
`,
	"zsh": `# moonfrp-bulk completion for zsh: source it from ~/.zshrc.
autoload -U +X bashcompinit && bashcompinit
complete -o nospace -C '@BIN@' moonfrp-bulk
`,
	"fish": `# moonfrp-bulk completion for fish: save it as
# ~/.config/fish/completions/moonfrp-bulk.fish.
function __complete_moonfrp_bulk
    set -lx COMP_LINE (commandline -cp)
    test -z (commandline -ct)
    and set COMP_LINE "$COMP_LINE "
    '@BIN@'
end
complete -f -c moonfrp-bulk -a "(__complete_moonfrp_bulk)"
`,
}
