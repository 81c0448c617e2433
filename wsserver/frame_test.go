package wsserver

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestAppendFrameHeader(t *testing.T) {
	for _, tc := range []struct {
		typ  websocket.MessageType
		n    int
		want []byte
	}{
		{websocket.MessageText, 0, []byte{0x81, 0}},
		{websocket.MessageBinary, 125, []byte{0x82, 125}},
		{websocket.MessageText, 126, []byte{0x81, 126, 0, 126}},
		{websocket.MessageBinary, 0xffff, []byte{0x82, 126, 0xff, 0xff}},
		{websocket.MessageBinary, 0x10000, []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		got := appendFrameHeader(nil, tc.typ, tc.n)
		require.Equal(t, tc.want, got, "%v of %d bytes", tc.typ, tc.n)
		require.LessOrEqual(t, len(got), maxFrameHeader)
	}
}

// Every size class of frame, sent from the handler (straight to the socket when it takes
// it, through the writer otherwise) and from another goroutine in bursts, reaches a
// coder/websocket client intact and in order.
func TestDirectFramesReachTheClient(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 1000, 0xffff, 0x10000, batchBufSize - maxFrameHeader, batchBufSize, 200_000}
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) {
		n, err := strconv.Atoi(string(m.Data))
		if err != nil {
			_ = c.SendText("bad request " + string(m.Data))
			return
		}
		_ = c.Send(Binary(pattern(n)))
		_ = c.SendText("after " + strconv.Itoa(n))
	}}, Options{})
	c := dial(t, ts.url)
	defer c.CloseNow()
	c.SetReadLimit(-1)
	for _, n := range sizes {
		write(t, c, strconv.Itoa(n))
		typ, got := read(t, c)
		require.Equal(t, websocket.MessageBinary, typ)
		require.Equal(t, string(pattern(n)), got, "%d bytes", n)
		typ, got = read(t, c)
		require.Equal(t, websocket.MessageText, typ)
		require.Equal(t, "after "+strconv.Itoa(n), got)
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestSendRefusesUnknownMessageType(t *testing.T) {
	s := New(HandlerFuncs{}, Options{})
	c := fakeConn(s, 1)
	err := c.Send(Message{Type: 0, Data: []byte("x")})
	require.ErrorContains(t, err, "message type")
	require.Empty(t, c.out, "not queued")
	require.Zero(t, s.Stats().Dropped, "refused, not accepted and dropped")
}

// tcpPair is a loopback TCP connection: the server side in a batchWriter, the client side
// raw.
func tcpPair(t *testing.T) (*batchWriter, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- nc
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server := testutil.Recv(t, accepted, "the accepted connection")
	require.NotNil(t, server)
	t.Cleanup(func() { client.Close(); server.Close() })
	w := newBatchWriter(server, true)
	require.NotNil(t, w.raw, "a TCP socket takes non-blocking writes")
	return w, client
}

func frame(typ websocket.MessageType, data []byte) []byte {
	return append(appendFrameHeader(nil, typ, len(data)), data...)
}

func TestTryFrame(t *testing.T) {
	t.Run("an idle socket takes the frame at once", func(t *testing.T) {
		w, client := tcpPair(t)
		how, err := w.tryFrame(websocket.MessageText, []byte("hello"))
		require.NoError(t, err)
		require.Equal(t, frameSent, how)
		require.False(t, w.batching)
		require.Nil(t, w.buf, "no buffer held after the write")
		want := frame(websocket.MessageText, []byte("hello"))
		got := make([]byte, len(want))
		require.NoError(t, client.SetReadDeadline(time.Now().Add(wait)))
		_, err = io.ReadFull(client, got)
		require.NoError(t, err)
		require.Equal(t, want, got)
	})

	t.Run("busy, too big, no socket: left to the writer", func(t *testing.T) {
		w, _ := tcpPair(t)
		w.mu.Lock()
		how, err := w.tryFrame(websocket.MessageText, []byte("x"))
		w.mu.Unlock()
		require.NoError(t, err)
		require.Equal(t, frameNotSent, how, "another write holds the writer")

		how, err = w.tryFrame(websocket.MessageBinary, make([]byte, batchBufSize))
		require.NoError(t, err)
		require.Equal(t, frameNotSent, how, "larger than a batch buffer")

		w.begin(time.Now().Add(wait))
		how, err = w.tryFrame(websocket.MessageText, []byte("x"))
		require.NoError(t, err)
		require.Equal(t, frameNotSent, how, "a batch is under way")
		require.NoError(t, w.end())

		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		how, err = newBatchWriter(a, true).tryFrame(websocket.MessageText, []byte("x"))
		require.NoError(t, err)
		require.Equal(t, frameNotSent, how, "not a socket")
	})

	t.Run("no data frame after the close frame", func(t *testing.T) {
		w, _ := tcpPair(t)
		_, err := w.Write([]byte{opClose, 2, 0x03, 0xe8})
		require.NoError(t, err)
		_, err = w.tryFrame(websocket.MessageText, []byte("late"))
		require.ErrorIs(t, err, errCloseSent)
		w.begin(time.Now().Add(wait))
		require.ErrorIs(t, w.writeFrame(websocket.MessageText, []byte("late")), errCloseSent)
		require.NoError(t, w.end())
	})

	t.Run("a full socket: the rest waits in a batch, in order", func(t *testing.T) {
		w, client := tcpPair(t)
		require.NoError(t, w.nc.(*net.TCPConn).SetWriteBuffer(4096))
		require.NoError(t, client.(*net.TCPConn).SetReadBuffer(4096))
		msg := pattern(3000)
		var sent []byte
		outcome := frameSent
		for i := 0; outcome == frameSent; i++ {
			require.Less(t, i, 10_000, "the socket never filled up")
			var err error
			outcome, err = w.tryFrame(websocket.MessageBinary, msg)
			require.NoError(t, err)
			if outcome != frameNotSent {
				sent = append(sent, frame(websocket.MessageBinary, msg)...)
			}
		}
		t.Logf("the socket filled up with outcome %d", outcome)
		if outcome == framePart {
			require.True(t, w.batching, "the rest starts a batch")
			require.NotEmpty(t, *w.buf)
			how, err := w.tryFrame(websocket.MessageText, []byte("x"))
			require.NoError(t, err)
			require.Equal(t, frameNotSent, how, "nothing may overtake the rest")
		}
		// The writer goes on: a frame more, then the batch ends and flushes.
		var wg sync.WaitGroup
		var got []byte
		var readErr error
		wg.Go(func() {
			_ = client.SetReadDeadline(time.Now().Add(wait))
			want := len(sent) + len(frame(websocket.MessageText, []byte("last")))
			got = make([]byte, want)
			_, readErr = io.ReadFull(client, got)
		})
		w.begin(time.Now().Add(wait))
		require.NoError(t, w.writeFrame(websocket.MessageText, []byte("last")))
		require.NoError(t, w.end())
		wg.Wait()
		require.NoError(t, readErr)
		sent = append(sent, frame(websocket.MessageText, []byte("last"))...)
		require.True(t, bytes.Equal(sent, got), "the byte stream is every frame, whole and in order")
	})
}

// A peer that stops reading: what the socket did not take is written by the writer later,
// and every message arrives once the peer reads again.
func TestSendAfterTheSocketFills(t *testing.T) {
	const msgs, size = 200, 4000
	opened := make(chan *Conn, 1)
	ts := start(t, HandlerFuncs{Open: func(c *Conn) {
		_ = c.sock().(*net.TCPConn).SetWriteBuffer(4096)
		opened <- c
	}}, Options{SendBuffer: msgs, SendBufferBytes: msgs * size})
	c := dial(t, ts.url)
	defer c.CloseNow()
	sc := testutil.Recv(t, opened, "OnOpen")
	for i := range msgs {
		m := pattern(size)
		copy(m, strconv.Itoa(i)+":")
		require.NoError(t, sc.Send(Binary(m)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for i := range msgs {
		_, b, err := c.Read(ctx)
		require.NoError(t, err)
		m := pattern(size)
		copy(m, strconv.Itoa(i)+":")
		require.Equal(t, m, b, "message %d", i)
	}
}
