package enroltest

import (
	"os"
	"testing"

	"github.com/keydesk/keydesk/registry/regtest"
)

// Main runs a test binary's tests (call it from TestMain) in one Env: it
// builds the registry (regtest.RunTests), starts n practice keys and the
// registry process, sets *env, runs setup when it is not nil (enrolling
// what every test expects, say), runs the tests and stops everything. A
// failure to start or in setup fails the binary with its reason.
func Main(m *testing.M, n int, env **Env, setup func(*Env) error) {
	var bin string
	regtest.RunTests(mainRunner{m: m, bin: &bin, n: n, env: env, setup: setup}, &bin)
}

type mainRunner struct {
	m     *testing.M
	bin   *string
	n     int
	env   **Env
	setup func(*Env) error
}

func (r mainRunner) Run() int {
	e, err := Start(os.TempDir(), *r.bin, r.n)
	if err != nil {
		os.Stderr.WriteString("starting practice keys and registry: " + err.Error() + "\n")
		return 1
	}
	defer e.Stop()
	*r.env = e
	if r.setup != nil {
		if err := r.setup(e); err != nil {
			os.Stderr.WriteString("setting up the tests: " + err.Error() + "\n")
			return 1
		}
	}
	return r.m.Run()
}
