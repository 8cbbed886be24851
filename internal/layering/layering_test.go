// Package layering guards keydesk's import rules (STYLE.md, "Guard the shape"):
// the device layer knows nothing of UI or registry, the registry nothing of
// devices or UI, the use cases in app/ never import Fyne — only app/ui may —
// the keydesk commands link no GUI toolkit (keydesk-desk does), and
// keydesk's start links no more than its status commands need.
package layering

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/keydesk/keydesk"

// rule bans imports with any of the banned prefixes from packages whose
// import path starts with pkg (and that allowed does not exempt).
type rule struct {
	pkg     string
	allowed []string
	banned  []string
}

var rules = []rule{
	{pkg: module + "/device", banned: []string{"fyne.io/fyne/v2", module + "/registry", module + "/app", module + "/cmd"}},
	{pkg: module + "/registry", banned: []string{"fyne.io/fyne/v2", "github.com/go-piv/piv-go", "github.com/keys-pub/go-libfido2", module + "/device", module + "/app", module + "/cmd"}},
	// A login server links registry/validity: the registry's model and
	// nothing of its server, store or tools.
	{pkg: module + "/registry/validity", banned: []string{module + "/registry/server", module + "/registry/store", module + "/registry/command", module + "/registry/simulation", module + "/registry/attest", module + "/registry/regtest", module + "/registry/pgtest", module + "/internal"}},
	{pkg: module + "/app", allowed: []string{module + "/app/ui"}, banned: []string{"fyne.io/fyne/v2", module + "/cmd"}},
	// The keydesk command starts like a C tool: the GUI toolkit and what
	// only it needs (fonts, text shaping, Markdown, OpenGL) live in
	// keydesk-desk, whose package initialisers cost milliseconds
	// (GODEBUG=inittrace=1, docs/cli.md).
	{pkg: module + "/cmd/keydesk-cli", banned: frontBanned},
	// keydesk itself answers version and the status commands and starts
	// keydesk-cli for the rest: it links the device stack and the key
	// views, not the command tree, the registry, its client's SQLite
	// outbox or the WebAuthn and escrow code (docs/cli.md, "Start-up").
	{pkg: module + "/cmd/keydesk", banned: startBanned},
}

// startBanned are the packages keydesk's start must not link, beyond
// frontBanned.
var startBanned = append([]string{module + "/registry", module + "/app/enrol", module + "/app/regconn",
	module + "/app/settings", module + "/app/escrow", "github.com/spf13/cobra", "modernc.org", "github.com/jackc/pgx",
	"github.com/pressly/goose", "github.com/go-webauthn", "filippo.io/age", "net/http"}, frontBanned...)

// frontBanned are the packages the keydesk command must not link.
var frontBanned = []string{"fyne.io", "github.com/fyne-io", "github.com/go-gl", "github.com/go-text",
	"github.com/yuin/goldmark", "github.com/srwiley", "golang.org/x/image", module + "/app/ui"}

func hasPrefixPath(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// deps lists every package of the module with its transitive imports.
func deps(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	m := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			m[f[0]] = f[1:]
		}
	}
	return m
}

func TestLayering(t *testing.T) {
	all := deps(t)
	if len(all) == 0 {
		t.Fatal("go list found no packages")
	}
	checked := 0
	for pkg, imports := range all {
		for _, r := range rules {
			if !hasPrefixPath(pkg, r.pkg) {
				continue
			}
			exempt := false
			for _, a := range r.allowed {
				exempt = exempt || hasPrefixPath(pkg, a)
			}
			if exempt {
				continue
			}
			checked++
			for _, imp := range imports {
				for _, b := range r.banned {
					if hasPrefixPath(imp, b) {
						t.Errorf("%s imports %s (directly or through a dependency); %s must not depend on %s", pkg, imp, r.pkg, b)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no package fell under a rule; the module path or rules are wrong")
	}
}

// TestPackageNames keeps folders named for what they own.
func TestPackageNames(t *testing.T) {
	for pkg := range deps(t) {
		last := pkg[strings.LastIndex(pkg, "/")+1:]
		switch last {
		case "util", "utils", "common", "sync", "helpers", "misc":
			t.Errorf("package %s: name it for what it owns", pkg)
		}
	}
}
