// Package regtest builds the real keydesk-registry binary and runs it as a
// separate process for tests: start, SIGKILL, restart on the same state.
package regtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// logBuffer is one process's stdout and stderr, safe to read while the
// process writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// watch holds every secret handed out in this test binary and every log a
// registry process wrote, for RunTests to check that no log holds a secret.
var watch struct {
	mu      sync.Mutex
	secrets []string
	logs    []*logBuffer
}

// Secret registers s (a token, an access pass) as a secret that no registry
// log may contain. Token registers the tokens it creates itself.
func Secret(s string) {
	if s == "" {
		return
	}
	watch.mu.Lock()
	defer watch.mu.Unlock()
	watch.secrets = append(watch.secrets, s)
}

// Leaks lists the registered secrets found in any registry process's output
// so far, and how many logs and secrets it compared.
func Leaks() (leaked []string, logs, secrets int) {
	watch.mu.Lock()
	defer watch.mu.Unlock()
	for _, sec := range watch.secrets {
		for _, l := range watch.logs {
			if strings.Contains(l.String(), sec) {
				leaked = append(leaked, sec)
				break
			}
		}
	}
	return leaked, len(watch.logs), len(watch.secrets)
}

// Build compiles cmd/keydesk-registry with CGO_ENABLED=0 into dir and
// returns the binary's path. It fails if the registry needs cgo.
func Build(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "keydesk-registry")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/keydesk-registry")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building keydesk-registry with CGO_ENABLED=0: %w: %s", err, out)
	}
	return bin, nil
}

// Process is a running registry.
type Process struct {
	URL   string
	cmd   *exec.Cmd
	done  chan struct{}
	State string
	log   *logBuffer
}

// Log returns what the process has written to stdout and stderr so far.
func (p *Process) Log() string { return p.log.String() }

// Start runs `bin serve --dev-plain-http --listen 127.0.0.1:0 --state state`
// plus extra, and waits for its "listening on" line.
func Start(bin, state string, extra ...string) (*Process, error) {
	return StartArgs(bin, state, append([]string{"serve", "--dev-plain-http", "--listen", "127.0.0.1:0", "--state", state}, extra...)...)
}

// StartArgs runs bin with exactly args and waits for its "listening on" line.
func StartArgs(bin, state string, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	log := &logBuffer{}
	stderr := &logBuffer{}
	cmd.Stderr = io.MultiWriter(stderr, log)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting registry: %w", err)
	}
	watch.mu.Lock()
	watch.logs = append(watch.logs, log)
	watch.mu.Unlock()
	p := &Process{cmd: cmd, done: make(chan struct{}), State: state, log: log}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			fmt.Fprintln(log, sc.Text())
			line <- sc.Text()
		}
		close(line)
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
		}
	}()
	go func() { cmd.Wait(); close(p.done) }()
	select {
	case l, ok := <-line:
		if !ok {
			<-p.done
			return nil, fmt.Errorf("registry exited: %s", stderr.String())
		}
		i := strings.Index(l, "http")
		if i < 0 {
			p.Kill()
			return nil, fmt.Errorf("unexpected first line %q", l)
		}
		p.URL = l[i:]
	case <-time.After(60 * time.Second):
		p.Kill()
		return nil, errors.New("registry did not start within 60s")
	}
	return p, nil
}

// Kill sends SIGKILL and waits for the process to die.
func (p *Process) Kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits.
func (p *Process) Stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.Kill()
	}
}

// Token runs `bin token create` and returns the printed token.
func Token(bin, state, role, name, user string) (string, error) {
	args := []string{"token", "create", "--state", state, "--role", role, "--name", name}
	if user != "" {
		args = append(args, "--user", user)
	}
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("token create: %w: %s", err, ee.Stderr)
		}
		return "", err
	}
	tok := strings.TrimSpace(string(out))
	Secret(tok)
	return tok, nil
}

// AuditVerify runs `bin audit verify` and returns its output.
func AuditVerify(bin, state string) (string, error) {
	out, err := exec.Command(bin, "audit", "verify", "--state", state).CombinedOutput()
	return string(out), err
}

// RunTests is a TestMain for packages that drive the real keydesk-registry
// binary: it builds it once into a temporary directory, sets *bin, runs the
// tests, calls after (for example to stop a shared PostgreSQL), cleans up and
// exits.
func RunTests(m interface{ Run() int }, bin *string, after ...func()) {
	dir, err := os.MkdirTemp("", "keydesk-registry-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *bin, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	for _, f := range after {
		f()
	}
	// No registry process may have logged a secret handed out during the
	// run (the tokens Token created, the secrets tests registered).
	if leaked, _, _ := Leaks(); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d secrets appear in a keydesk-registry log\n", len(leaked))
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
