package sim

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebfe/scard"
	"github.com/go-piv/piv-go/v2/piv"

	"github.com/keydesk/keydesk/device/virtual/pivapplet"
)

// stateDir is one state directory for the whole test binary: libpcsclite
// reads PCSCLITE_CSOCK_NAME once per process, and the private pcscd's socket
// lives under the state directory, so every run here must use the same one.
var stateDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "keydesk-sim-test-")
	if err != nil {
		panic(err)
	}
	stateDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// session is one 'keydesk-sim run' in this process, with its printed output.
type session struct {
	cancel  context.CancelFunc
	done    chan error
	lines   chan string
	reader  string
	example string // the banner's "for example:" command line
}

// startRun runs Main("run") on dir and reads its banner up to the last line,
// taking the reader name and PCSCLITE_CSOCK_NAME from what it printed.
func startRun(t *testing.T, dir string) *session { return startRunKeys(t, dir, 1) }

// startRunKeys is startRun with keys virtual keys; it also keeps the
// banner's example command line.
func startRunKeys(t *testing.T, dir string, keys int) *session {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &session{cancel: cancel, done: make(chan error, 1), lines: make(chan string, 64)}
	go func() {
		err := Main(ctx, []string{"run", "--keys", strconv.Itoa(keys), "--state", dir, "--firmware", "5.7.2"}, pw, pw)
		pw.CloseWithError(io.EOF)
		s.done <- err
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	var banner []string
	for line := range s.lines {
		banner = append(banner, line)
		if r, ok := strings.CutPrefix(strings.TrimSpace(line), "PC/SC reader: "); ok {
			s.reader = r
		}
		if ex, ok := strings.CutPrefix(line, "for example:  "); ok {
			s.example = ex
		}
		if env, ok := strings.CutPrefix(strings.TrimSpace(line), "export PCSCLITE_CSOCK_NAME="); ok {
			os.Setenv("PCSCLITE_CSOCK_NAME", env)
		}
		if strings.HasPrefix(line, "State is kept in") {
			go func() {
				for range s.lines {
				}
			}()
			if s.reader == "" {
				t.Fatalf("no reader in the banner:\n%s", strings.Join(banner, "\n"))
			}
			return s
		}
	}
	t.Fatalf("keydesk-sim run ended early (%v):\n%s", <-s.done, strings.Join(banner, "\n"))
	return nil
}

func (s *session) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	if err := <-s.done; err != nil {
		t.Fatalf("keydesk-sim run: %v", err)
	}
}

// waitState blocks until pcscd reports the reader's card present (or absent).
func waitState(t *testing.T, reader string, present bool) {
	t.Helper()
	sc, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Release()
	rs := []scard.ReaderState{{Reader: reader, CurrentState: scard.StateUnaware}}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := sc.GetStatusChange(rs, 500*time.Millisecond); err != nil && err != scard.ErrTimeout {
			t.Fatal(err)
		}
		if (rs[0].EventState&scard.StatePresent != 0) == present {
			return
		}
		rs[0].CurrentState = rs[0].EventState
	}
	t.Fatalf("card in %q not present=%v after 10s", reader, present)
}

// TestRunKeepsKeysAndTakesControlCommands runs keydesk-sim, generates a key
// through piv-go, removes and reinserts the key over the control socket,
// stops, runs again on the same state directory and finds the same key.
func TestRunKeepsKeysAndTakesControlCommands(t *testing.T) {
	dir := stateDir
	old, _ := filepath.Glob(filepath.Join(dir, "key-*.json"))
	for _, f := range old {
		os.Remove(f) // a fresh key for each run of this test (go test -count)
	}
	s := startRun(t, dir)
	waitState(t, s.reader, true)

	yk, err := piv.Open(s.reader)
	if err != nil {
		t.Fatalf("piv.Open(%q): %v", s.reader, err)
	}
	pub, err := yk.GenerateKey(pivapplet.DefaultManagementKey, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyAlways, TouchPolicy: piv.TouchPolicyNever})
	yk.Close()
	if err != nil {
		t.Fatalf("generate: %v", err)
	}

	serial := "31000001"
	list, err := control(dir, "list")
	if err != nil || !strings.Contains(list, serial+"\tinserted") {
		t.Fatalf("list: %q %v", list, err)
	}
	if _, err := control(dir, "remove "+serial); err != nil {
		t.Fatal(err)
	}
	waitState(t, s.reader, false)
	if list, _ := control(dir, "list"); !strings.Contains(list, serial+"\tremoved") {
		t.Fatalf("list after remove: %q", list)
	}
	if _, err := control(dir, "insert "+serial); err != nil {
		t.Fatal(err)
	}
	waitState(t, s.reader, true)
	if _, err := control(dir, "power-cycle "+serial); err != nil {
		t.Fatal(err)
	}
	if _, err := control(dir, "touch 99"); err == nil {
		t.Fatal("control accepted an unknown serial")
	}
	s.stop(t)

	fi, err := os.Stat(filepath.Join(dir, "key-"+serial+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, want 0600 (it holds private keys)", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, "control.sock")); !os.IsNotExist(err) {
		t.Fatalf("control socket left behind: %v", err)
	}

	s = startRun(t, dir)
	defer s.stop(t)
	waitState(t, s.reader, true)
	yk, err = piv.Open(s.reader)
	if err != nil {
		t.Fatalf("piv.Open after restart: %v", err)
	}
	defer yk.Close()
	info, err := yk.KeyInfo(piv.SlotSignature)
	if err != nil {
		t.Fatalf("key info after restart: %v", err)
	}
	if !pub.(*ecdsa.PublicKey).Equal(info.PublicKey) || info.PINPolicy != piv.PINPolicyAlways {
		t.Fatalf("after restart slot 9c holds %+v, want the key generated before", info)
	}
}

// TestPrintedExampleWorks runs the example command line keydesk-sim prints,
// as printed, through a shell with the real ykman, while two keys run (pcscd
// lists two readers whatever the number of keys): it must reach the first
// key, not stop at "Multiple YubiKeys on external readers detected".
func TestPrintedExampleWorks(t *testing.T) {
	if _, err := exec.LookPath("ykman"); err != nil {
		t.Fatal("ykman is not installed (packaging/install-deps.sh installs yubikey-manager)")
	}
	s := startRunKeys(t, stateDir, 2)
	defer s.stop(t)
	waitState(t, s.reader, true)
	if !strings.Contains(s.example, "ykman -r ") {
		t.Fatalf("no ykman example in the banner: %q", s.example)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sh", "-c", s.example).CombinedOutput()
	if err != nil {
		t.Fatalf("the printed example failed: %v\n$ %s\n%s", err, s.example, out)
	}
	if !strings.Contains(string(out), "Serial number: 31000001") {
		t.Fatalf("the printed example did not reach key 31000001:\n$ %s\n%s", s.example, out)
	}
}
