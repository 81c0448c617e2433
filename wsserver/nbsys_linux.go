package wsserver

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls of the message path on a non-blocking socket (read(2), write(2)) and the
// poller's epoll_wait with no timeout are made raw, without telling the scheduler that the
// thread enters a system call (entersyscall, exitsyscall): none of them waits, so the
// goroutine keeps its P throughout. The scheduler's bookkeeping costs more than it is
// worth for calls this short, and a P seen "in a system call" by sysmon keeps sysmon
// polling every 20 µs (it retakes such Ps) and wakes it from its long sleeps
// (entersyscall's wake of a sleeping sysmon): a futex call and two context switches.
//
// Under the race detector, read and write go through package syscall, whose annotations
// say that what one goroutine writes to a descriptor happens before another reads it: a
// test whose client and server share memory through a socket relies on that.

// nbRead is read(2) on a non-blocking descriptor.
func nbRead(fd uintptr, p []byte) (int, error) {
	if raceEnabled {
		return syscall.Read(int(fd), p)
	}
	return rawIO(unix.SYS_READ, fd, p)
}

// nbWrite is write(2) on a non-blocking descriptor.
func nbWrite(fd uintptr, p []byte) (int, error) {
	if raceEnabled {
		return syscall.Write(int(fd), p)
	}
	return rawIO(unix.SYS_WRITE, fd, p)
}

// rawIO is read(2) or write(2) (trap) of p on fd, made raw.
func rawIO(trap, fd uintptr, p []byte) (int, error) {
	var b unsafe.Pointer
	if len(p) > 0 {
		b = unsafe.Pointer(&p[0])
	}
	n, _, e := syscall.RawSyscall(trap, fd, uintptr(b), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// epollTake is epoll_wait(2) with no timeout: it never waits.
func epollTake(epfd int, evs []unix.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
