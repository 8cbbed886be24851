package ui_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestNoCountWithoutPlural: no text the desktop app shows counts tries
// with a bare "%d tries" ("1 tries left"): counts go through uikit.Count
// or a helper that says "1 try". It reads the sources of the app's
// screens and of the use cases whose words they show.
func TestNoCountWithoutPlural(t *testing.T) {
	bare := regexp.MustCompile(`%d (tries|try|attempts|choices|keys|entries|users|settings)\b`)
	var found []string
	for _, dir := range []string{".", "../verify", "../recover", "../activity", "../migrate", "../settings"} {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(b), "\n") {
				if bare.MatchString(line) {
					found = append(found, path+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(line))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(found) > 0 {
		t.Errorf("counts without a singular:\n%s", strings.Join(found, "\n"))
	}
}
