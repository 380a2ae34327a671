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
	mangokong "github.com/alecthomas/mango-kong"
	"github.com/muesli/roff"
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

// ManCmd prints the man page, made from the same kong model as --help.
type ManCmd struct{}

// Run prints the man page in roff.
func (c *ManCmd) Run(kctx *kong.Context, a *app) error {
	manModel(kctx.Model.Node)
	// The adapter takes the first line as the page's one-line summary
	// and every other line as a paragraph: give it whole paragraphs.
	kctx.Model.Help = "parallel systemd operations for MoonFRP tunnels\n" + manParagraphs(description)
	page := mangokong.NewManPage(1, kctx.Model)
	page = page.WithSection("Environment", environmentText).WithSection("Exit status", exitCodes(description)).WithSection("Files", filesText)
	fmt.Fprint(a.streams.Out, page.Build(roff.NewDocument()))
	return nil
}

// exitCodes is the "Exit codes:" block of the description (the one
// place they are written), one code a line, each line whole.
func exitCodes(text string) string {
	_, block, _ := strings.Cut(text, "Exit codes:\n")
	var codes []string
	for _, line := range strings.Split(block, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case len(codes) > 0 && strings.Trim(f[0], "0123456789") != "":
			codes[len(codes)-1] += " " + strings.Join(f, " ") // a continued line
		default:
			codes = append(codes, strings.Join(f, " "))
		}
	}
	return strings.Join(codes, ";\n") + "."
}

// manParagraphs joins each paragraph of text into one line, one paragraph
// a line; the exit codes, which have a section of their own, are left out.
func manParagraphs(text string) string {
	var out []string
	for _, p := range strings.Split(text, "\n\n") {
		if strings.HasPrefix(p, "Exit codes:") {
			continue
		}
		out = append(out, strings.Join(strings.Fields(p), " "))
	}
	return strings.Join(out, "\n")
}

// manModel readies the model for the man page adapter, which would list
// hidden flags and commands, formats help texts (a '%' in them must be
// doubled), and runs a command's examples into its heading: hidden parts
// go, '%' is doubled, and the examples stay in --help. This model serves
// the man page alone.
func manModel(n *kong.Node) {
	flags := n.Flags[:0]
	for _, f := range n.Flags {
		if !f.Hidden {
			f.Help = strings.ReplaceAll(f.Help, "%", "%%")
			f.PlaceHolder = strings.ReplaceAll(f.PlaceHolder, "%", "%%")
			flags = append(flags, f)
		}
	}
	n.Flags = flags
	children := n.Children[:0]
	for _, c := range n.Children {
		if !c.Hidden {
			c.Detail = ""
			c.Help = strings.ReplaceAll(c.Help, "%", "%%")
			manModel(c)
			children = append(children, c)
		}
	}
	n.Children = children
}

const environmentText = `MOONFRP_MAX_PARALLEL: default for --max-parallel.
MOONFRP_BULK_MAX_FAIL, MOONFRP_BULK_CANARY: defaults for --max-fail and --canary.
MOONFRP_BULK_USER: non-empty is --user.
MOONFRP_LOG_FORMAT=json: -o json by default.
MOONFRP_LOG_DIR (default /var/log/frp): where a unit's <service>.log is looked for.
MOONFRP_DATA_DIR: MoonFRP's data directory, holding the config index that tag: filters read.
NO_COLOR (non-empty), CLICOLOR_FORCE, TERM=dumb: colour and the live line.
XDG_STATE_HOME, XDG_RUNTIME_DIR: the job log and the locks of --user runs.`

const filesText = `/var/lib/moonfrp-bulk/jobs.jsonl (with --user: $XDG_STATE_HOME/moonfrp-bulk/jobs.jsonl) is the job log that --filter=last:... reads;
/run/moonfrp-bulk (with --user: $XDG_RUNTIME_DIR/moonfrp-bulk) holds the per-unit locks;
/usr/share/moonfrp-bulk/moonfrp-bulk.sh is the bash shim for MoonFRP (integrate installs its own copy of the shim the binary carries in /usr/local/share/moonfrp-bulk).`

// HelpCmd prints the help of a command, as COMMAND --help does.
type HelpCmd struct {
	Command []string `arg:"" optional:"" help:"The command to explain (default: all of them)."`
}

// Run prints the help.
func (h *HelpCmd) Run(kctx *kong.Context) error {
	target, err := kong.Trace(kctx.Kong, h.Command)
	if err == nil {
		err = target.Error
	}
	if err != nil {
		return usageErr("help: %v; see 'moonfrp-bulk --help' for the commands", err)
	}
	return target.PrintUsage(false)
}
