package main

import (
	"fmt"
	"strings"

	"github.com/alecthomas/kong"
	mangokong "github.com/alecthomas/mango-kong"
	"github.com/muesli/roff"
)

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
