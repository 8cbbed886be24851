//go:build linux

package ptyhid_test

import "os/exec"

var lookPath = exec.LookPath
