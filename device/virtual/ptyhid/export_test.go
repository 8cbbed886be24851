//go:build linux

package ptyhid

// HolderPID is the holder process's pid, 0 when there is none.
func (d *Device) HolderPID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pty == nil || d.pty.holder == nil {
		return 0
	}
	return d.pty.holder.Process.Pid
}
