package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// inlineTransport sends the read client's requests (GET and HEAD) to a plain-HTTP
// Elasticsearch and reads their answers in the caller's goroutine, over pooled keep-alive
// connections. net/http's Transport hands every request to two goroutines of its connection (a
// writer and a reader) and back; on a loopback those hand-offs were most of what the sidecar
// added to a GET with one client (0.2 ms on the benchmark machine; see BENCHMARKS.md).
//
// The HTTP/1.1 itself is net/http's: http.Request.Write and http.ReadResponse. What is written
// here is only the pooling, and its rule is the one that keeps answers from being mixed up: a
// connection goes back to the pool only once its answer's body has been read to its end as
// framed by the answer (Content-Length or chunked) and the answer did not ask to close it.
// Anything else (an error, a body closed early, a cancelled context) closes the connection.
//
// Everything else (other methods, TLS, a proxy from the environment) goes to the fallback,
// net/http's Transport: writes, whose retry rules net/http gets right, never come here.
type inlineTransport struct {
	fallback    *http.Transport
	dialer      *net.Dialer
	maxIdle     int           // idle connections kept per host
	idleTimeout time.Duration // an idle connection older than this is closed, not reused

	mu   sync.Mutex
	idle map[string][]*inlineConn // by host:port, most recently used last
}

// inlineConn is one pooled connection with its buffered reader, which holds nothing while the
// connection is idle (the pool rule above).
type inlineConn struct {
	net.Conn
	host      string // the pool it belongs to
	br        *bufio.Reader
	bw        *bufio.Writer // empty between requests
	idleSince time.Time
}

// RoundTrip sends req inline when it can, else through the fallback.
func (t *inlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		return t.fallback.RoundTrip(req)
	}
	// A request whose caller already gave up must not take, and so close, a healthy idle
	// connection (the client retries such errors too).
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	addr := hostPort(req.URL)
	c, reused, err := t.conn(req.Context(), addr)
	if err != nil {
		return nil, err
	}
	res, err := t.exchange(c, req)
	if err != nil && reused && errors.Is(err, errNothingReceived) && closedByPeer(err) {
		// The server had closed the idle connection (a gateway's idle timeout) before it read
		// the request: nothing was answered, and a GET or HEAD can be sent again, once, on a
		// new connection, as net/http does. Not after a timeout: that server is slow, not gone.
		if c, err = t.dial(req.Context(), addr); err != nil {
			return nil, err
		}
		res, err = t.exchange(c, req)
	}
	return res, err
}

// hostPort is the address to dial for a plain-HTTP URL: its host with port 80 when the URL
// names none (OPTIMIZE_ELASTICSEARCH_URLS=http://es), as net/http does.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// handles tells whether req is one the inline path sends: a GET or HEAD without a body over
// plain HTTP and not through a proxy.
func (t *inlineTransport) handles(req *http.Request) bool {
	if req.URL.Scheme != "http" || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	if t.fallback.Proxy != nil {
		if proxy, err := t.fallback.Proxy(req); err != nil || proxy != nil {
			return false
		}
	}
	return true
}

// errNothingReceived is an exchange that failed before the first byte of an answer.
var errNothingReceived = errors.New("the connection ended before an answer")

// closedByPeer tells whether err says the other side closed the connection.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// exchange writes req on c and reads the answer's head; the answer's body reads on from c.
func (t *inlineTransport) exchange(c *inlineConn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if deadline, ok := ctx.Deadline(); ok {
		c.SetDeadline(deadline)
	}
	// A cancelled context interrupts a blocked read or write; the connection is then closed.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	// Writes fail only on the connection (a long request line flushes midway): nothing can
	// have been answered yet.
	if err := req.Write(c.bw); err != nil {
		return fail(fmt.Errorf("%w: %w", errNothingReceived, err))
	}
	if err := c.bw.Flush(); err != nil {
		return fail(fmt.Errorf("%w: %w", errNothingReceived, err))
	}
	if _, err := c.br.Peek(1); err != nil {
		return fail(fmt.Errorf("%w: %w", errNothingReceived, err))
	}
	res, err := http.ReadResponse(c.br, req)
	// An interim 1xx answer (a proxy's 103 Early Hints) is not the answer: the final one
	// follows on the same connection, and must not be left there for the next request.
	for err == nil && res.StatusCode >= 100 && res.StatusCode < 200 {
		if res.StatusCode == http.StatusSwitchingProtocols {
			return fail(errors.New("the server switched protocols on a GET"))
		}
		res, err = http.ReadResponse(c.br, req)
	}
	if err != nil {
		return fail(err)
	}
	body := &inlineBody{body: res.Body, c: c, t: t, stop: stop, keep: !res.Close}
	if res.Body == http.NoBody {
		// No body to read (HEAD, 204, an empty answer): the connection is free now.
		body.release(true)
		return res, nil
	}
	res.Body = body
	return res, nil
}

// inlineBody is an answer's body: read to its end, it gives its connection back to the pool.
type inlineBody struct {
	body  io.ReadCloser
	c     *inlineConn
	t     *inlineTransport
	stop  func() bool
	keep  bool // the answer allows the connection to be reused
	done  bool // the connection was given back or closed
	whole bool // the body was read to its end
}

// Read reads the body; at its end the connection goes back to the pool.
func (b *inlineBody) Read(p []byte) (int, error) {
	if b.done {
		if b.whole {
			return 0, io.EOF
		}
		return 0, errors.New("read of a closed answer body")
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.release(true)
	} else if err != nil {
		b.release(false)
	}
	return n, err
}

// Close ends the body: a connection whose answer was not read to its end cannot be reused (the
// rest of that answer would be read as the next one's), and is closed.
func (b *inlineBody) Close() error {
	b.release(false)
	return nil
}

// release gives the connection back if the answer was read whole and its context did not
// interrupt it, and closes it otherwise.
func (b *inlineBody) release(whole bool) {
	if b.done {
		return
	}
	b.done, b.whole = true, whole
	interrupted := !b.stop()
	// Bytes beyond the answer's end were never asked for: the connection is not trusted.
	if !whole || !b.keep || interrupted || b.c.br.Buffered() > 0 {
		b.c.Close()
		return
	}
	b.c.SetDeadline(time.Time{})
	b.t.put(b.c)
}

// conn is an idle connection to host that is still usable, or a new one; reused tells which.
func (t *inlineTransport) conn(ctx context.Context, host string) (c *inlineConn, reused bool, err error) {
	for {
		t.mu.Lock()
		pool := t.idle[host]
		if len(pool) == 0 {
			t.mu.Unlock()
			c, err := t.dial(ctx, host)
			return c, false, err
		}
		// The oldest connections are at the bottom: those idle too long are closed here, so
		// that a burst's extra connections do not linger (half-closed by a gateway) forever.
		for len(pool) > 0 && time.Since(pool[0].idleSince) >= t.idleTimeout {
			pool[0].Close()
			pool = pool[1:]
		}
		if len(pool) == 0 {
			t.idle[host] = nil
			t.mu.Unlock()
			continue
		}
		c = pool[len(pool)-1]
		t.idle[host] = pool[:len(pool)-1]
		t.mu.Unlock()
		if c.quiet() {
			return c, true, nil
		}
		c.Close()
	}
}

// quiet tells whether an idle connection can carry a request: the server has neither closed
// it nor sent anything on it since its last answer (a gateway's "408 Request Timeout" before
// it closes would otherwise be read as the next answer). It peeks at the socket without
// waiting; a connection it cannot peek at counts as quiet, and the retry in RoundTrip covers
// one that was closed after all.
func (c *inlineConn) quiet() bool {
	raw, ok := c.Conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := raw.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var peekErr error
	var buf [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		n, _, peekErr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readiness: this is a look, not a read
	}); err != nil {
		return false
	}
	// EAGAIN: nothing to read, the connection is open and idle.
	return n < 0 && errors.Is(peekErr, syscall.EAGAIN)
}

// dial opens a new connection to host.
func (t *inlineTransport) dial(ctx context.Context, host string) (*inlineConn, error) {
	nc, err := t.dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	return &inlineConn{Conn: nc, host: host, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, nil
}

// put keeps an idle connection, unless the pool for its host is full.
func (t *inlineTransport) put(c *inlineConn) {
	c.idleSince = time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idle == nil {
		t.idle = map[string][]*inlineConn{}
	}
	if len(t.idle[c.host]) >= t.maxIdle {
		c.Close()
		return
	}
	t.idle[c.host] = append(t.idle[c.host], c)
}
