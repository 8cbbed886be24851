//go:build linux

package fidotest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Tool is the result of running a command-line referee.
type Tool struct {
	Cmd    string // the full command line
	Stdout string
	TTY    string // everything the tool wrote to its terminal (prompts, errors)
	Err    error
}

func (r *Tool) String() string {
	return fmt.Sprintf("command: %s\nerror: %v\nterminal:\n%s\nstdout:\n%s", r.Cmd, r.Err, r.TTY, r.Stdout)
}

var promptRE = regexp.MustCompile(`(?i)pin[^\n]*: ?$`)

// RunTool runs name with args on a pseudo-terminal of its own (its
// controlling terminal, stdin and stderr), so tools that read a PIN with
// readpassphrase(3) get it the way a person types it: pins are typed, one per
// PIN prompt, and never appear on a command line. stdin, when not nil, is
// not used; tools take their input from files (-i). Stdout is captured.
func RunTool(ctx context.Context, pins []string, name string, args ...string) *Tool {
	res := &Tool{Cmd: strings.Join(append([]string{name}, args...), " ")}
	master, slave, err := openTerminal()
	if err != nil {
		res.Err = err
		return res
	}
	defer master.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout bytes.Buffer
	cmd.Stdin, cmd.Stderr, cmd.Stdout = slave, slave, &stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		slave.Close()
		res.Err = err
		return res
	}
	slave.Close()

	var (
		mu  sync.Mutex
		tty bytes.Buffer
		wg  sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1024)
		pending := ""
		for {
			n, err := master.Read(buf)
			if n > 0 {
				mu.Lock()
				tty.Write(buf[:n])
				mu.Unlock()
				pending += string(buf[:n])
				if promptRE.MatchString(pending) && len(pins) > 0 {
					master.Write([]byte(pins[0] + "\n"))
					pins = pins[1:]
					pending = ""
				}
			}
			if err != nil {
				return
			}
		}
	}()
	res.Err = cmd.Wait()
	wg.Wait()
	res.Stdout = stdout.String()
	mu.Lock()
	res.TTY = tty.String()
	mu.Unlock()
	return res
}

// openTerminal opens a pseudo-terminal pair in its default (cooked) mode.
func openTerminal() (master, slave *os.File, err error) {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(m)
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
	if err != nil {
		unix.Close(m)
		return nil, nil, err
	}
	path := fmt.Sprintf("/dev/pts/%d", n)
	s, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(m)
		return nil, nil, err
	}
	return os.NewFile(uintptr(m), "/dev/ptmx"), os.NewFile(uintptr(s), path), nil
}
