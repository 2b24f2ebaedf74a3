package testenv

import "syscall"

// sysProcAttr runs the child as as (nil: as us) and has the kernel kill it
// when the test binary exits, even if [Main] never gets to stop it. Go sets
// the parent-death signal after switching user, so it survives the switch.
func sysProcAttr(as *runAs) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if as != nil {
		attr.Credential = &syscall.Credential{Uid: as.uid, Gid: as.gid}
	}
	return attr
}
