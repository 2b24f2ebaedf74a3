package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// A process is a server running as a child of the test binary, with its
// output in a log file.
type process struct {
	cmd  *exec.Cmd
	log  string        // path of the file holding its stdout and stderr
	done chan struct{} // closed when it has exited
}

// runAs is an unprivileged account to run a server as when we are root.
type runAs struct {
	name     string
	uid, gid uint32
}

// unprivileged returns the account servers that refuse root should run as,
// or nil when we are not root. It prefers the "postgres" account that
// PostgreSQL packages create, then "nobody".
func unprivileged() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &runAs{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("running as root and found neither a postgres nor a nobody account to run the server as")
}

// chownAll gives dir and everything in it to as (nil: leave as is).
func chownAll(dir string, as *runAs) error {
	if as == nil {
		return nil
	}
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(as.uid), int(as.gid))
	})
}

// command returns an exec.Cmd that runs as the given account (nil: as us)
// and, where the OS allows, is killed if the test binary dies first.
func command(as *runAs, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = sysProcAttr(as)
	return cmd
}

// start starts cmd with its output going to logPath.
func start(cmd *exec.Cmd, logPath string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = p.cmd.Wait() // the exit status only matters through the log
		close(p.done)
	}()
	return p, nil
}

// logTail returns the end of the process's log.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return tail(b)
}

// stop sends sig, waits a while for the process to exit, then kills it.
func (p *process) stop(sig os.Signal) {
	if err := p.cmd.Process.Signal(sig); err == nil {
		select {
		case <-p.done:
			return
		case <-time.After(10 * time.Second):
		}
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}
