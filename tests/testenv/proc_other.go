//go:build !unix

package testenv

import "syscall"

// sysProcAttr has nothing to set here: we are never root off Unix.
func sysProcAttr(*runAs) *syscall.SysProcAttr { return nil }
