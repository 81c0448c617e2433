package wsserver

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The raw system calls say what package syscall's would: bytes and counts, EAGAIN on an
// empty non-blocking socket (an Errno, as rawRead and rawWrite expect), and epoll_wait's
// ready events without waiting.
func TestRawSystemCalls(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer func() {
		for _, fd := range fds {
			if fd >= 0 {
				_ = unix.Close(fd)
			}
		}
	}()
	a, b := uintptr(fds[0]), uintptr(fds[1])

	buf := make([]byte, 16)
	n, err := nbRead(b, buf)
	require.Equal(t, syscall.EAGAIN, err)
	require.Equal(t, -1, n)

	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(epfd)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET}
	setEventID(&ev, 7<<32|3)
	require.NoError(t, unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fds[1], &ev))
	evs := make([]unix.EpollEvent, 4)
	n, err = epollTake(epfd, evs)
	require.NoError(t, err)
	require.Zero(t, n, "nothing is ready")

	n, err = nbWrite(a, []byte("hello"))
	require.NoError(t, err)
	require.Equal(t, 5, n)
	n, err = nbWrite(a, nil)
	require.NoError(t, err)
	require.Zero(t, n)

	n, err = epollTake(epfd, evs)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, uint64(7<<32|3), eventID(&evs[0]))

	n, err = nbRead(b, buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))
	_, err = nbRead(b, buf)
	require.Equal(t, syscall.EAGAIN, err)

	require.NoError(t, unix.Close(fds[0]))
	fds[0] = -1
	n, err = nbRead(b, buf)
	require.NoError(t, err)
	require.Zero(t, n, "end of stream")
	_, err = nbWrite(b, []byte("x"))
	require.Equal(t, syscall.EPIPE, err)

	_, err = nbRead(^uintptr(0), buf)
	require.Equal(t, syscall.EBADF, err)
	_, err = epollTake(-1, evs)
	require.Equal(t, syscall.EBADF, err)
}
