//go:build unix && !linux

package testenv

import "syscall"

// sysProcAttr runs the child as as (nil: as us). There is no parent-death
// signal outside Linux: only [Main] stops the server.
func sysProcAttr(as *runAs) *syscall.SysProcAttr {
	if as == nil {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: as.uid, Gid: as.gid}}
}
