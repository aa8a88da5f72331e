package tcluster

import "syscall"

// sysProcAttr makes Linux SIGKILL a service when the process that started it dies, so that a test
// binary killed by its timeout leaves no Temporal behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
