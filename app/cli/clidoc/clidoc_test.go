package clidoc

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite packaging/man/keydesk and docs/cli.md's command reference")

const (
	manDir = "../../../packaging/man/keydesk"
	cliDoc = "../../../docs/cli.md"
)

// TestGenerated fails when the committed man pages or docs/cli.md's
// command reference differ from what the command tree gives now (a
// command, flag or help text changed without them), or when a page of a
// command that no longer exists is left behind.
func TestGenerated(t *testing.T) {
	pages, err := Man()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		os.RemoveAll(manDir)
		if err := os.MkdirAll(manDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range pages {
		p := filepath.Join(manDir, name)
		if *update {
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what the command tree gives (run go test ./app/cli/clidoc -update): %v", p, err)
		}
	}
	ents, err := os.ReadDir(manDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, ok := pages[e.Name()]; !ok {
			t.Errorf("%s: no command gives this page any more (run go test ./app/cli/clidoc -update)", e.Name())
		}
	}
	if _, ok := pages["keydesk-piv-status.1"]; !ok {
		t.Errorf("no page for keydesk piv status among %d pages", len(pages))
	}
	for _, p := range []string{"keydesk-cli.1", "keydesk-desk.1"} {
		if got := string(pages[p]); got != ".so man1/keydesk.1\n" {
			t.Errorf("%s is %q, want a redirect to keydesk(1)", p, got)
		}
	}

	doc, err := os.ReadFile(cliDoc)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Splice(string(doc), Reference())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(cliDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if string(doc) != want {
		t.Errorf("docs/cli.md's command reference is not what the command tree gives (run go test ./app/cli/clidoc -update)")
	}
}

// TestReferenceNamesEveryFlag: the reference carries piv self-sign's own
// --days, and not on piv status.
func TestReferenceNamesEveryFlag(t *testing.T) {
	ref := Reference()
	i := strings.Index(ref, "### `keydesk piv self-sign")
	j := strings.Index(ref, "### `keydesk piv status")
	if i < 0 || j < 0 {
		t.Fatalf("reference lacks piv self-sign or piv status:\n%s", ref)
	}
	if !strings.Contains(ref[i:], "`--days INT`") {
		t.Errorf("piv self-sign's --days is missing")
	}
	status := ref[j:]
	if k := strings.Index(status[1:], "### "); k > 0 {
		status = status[:k+1]
	}
	if strings.Contains(status, "--days") {
		t.Errorf("piv status lists --days:\n%s", status)
	}
}
