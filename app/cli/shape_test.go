package cli_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// maxFuncLines is the longest a function of the command line may be
// (STYLE.md: one small function per subcommand).
const maxFuncLines = 60

// TestFunctionsAreSmall keeps every function of the command line at most
// maxFuncLines lines long: a subcommand that grows gets functions of its
// own, not another case in a dispatcher. The command line is this package,
// its key views (keyview) and keydesk's own status path (cmd/keydesk).
func TestFunctionsAreSmall(t *testing.T) {
	var files []string
	for _, pattern := range []string{"*.go", "keyview/*.go", "../../cmd/keydesk/*.go", "../../cmd/keydesk-cli/*.go"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			checked++
			if n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1; n > maxFuncLines {
				t.Errorf("%s: %s is %d lines; split it (at most %d)", f, fd.Name.Name, n, maxFuncLines)
			}
		}
	}
	if checked < 50 {
		t.Fatalf("checked only %d functions: wrong directory?", checked)
	}
}
