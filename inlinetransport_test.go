package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"
)

// newInlineTransport is the read client's transport as newESClient builds it.
func newInlineTransport() *inlineTransport {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &inlineTransport{fallback: &http.Transport{Proxy: http.ProxyFromEnvironment, DialContext: dialer.DialContext},
		dialer: dialer, maxIdle: 64, idleTimeout: 90 * time.Second}
}

// echoServer answers every request with its own path (chunked when the query says so, or a
// large answer for /big) and counts the connections it accepted.
func echoServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/big":
			io.WriteString(w, strings.Repeat("x", 1<<20))
		case r.URL.Path == "/hold":
			// Part of an answer, then nothing until the client goes away.
			io.WriteString(w, strings.Repeat("x", 100))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case r.URL.Query().Has("chunked"):
			for _, part := range strings.SplitAfter(r.URL.Path, "/") {
				io.WriteString(w, part)
				w.(http.Flusher).Flush()
			}
		case r.URL.Query().Has("close"):
			w.Header().Set("Connection", "close")
			io.WriteString(w, r.URL.Path)
		case r.URL.Query().Has("empty"):
			w.WriteHeader(http.StatusNoContent)
		default:
			io.WriteString(w, r.URL.Path)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// get sends one GET through rt and returns its status and whole body.
func get(t *testing.T, rt http.RoundTripper, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	res, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the answer: %v", url, err)
	}
	return res.StatusCode, string(body)
}

// Answers read to their end free their connection: one connection serves them all, plain,
// chunked, HEAD and 204 alike.
func TestInlineTransportReusesConnections(t *testing.T) {
	srv, conns := echoServer(t)
	rt := newInlineTransport()
	for i := range 20 {
		path := fmt.Sprintf("/snap/%d", i)
		query := []string{"", "?chunked", "?empty"}[i%3]
		status, body := get(t, rt, srv.URL+path+query)
		if query == "?empty" {
			assert.Equal(t, status, http.StatusNoContent)
			assert.Equal(t, body, "")
			continue
		}
		assert.Equal(t, body, path)
	}
	req, _ := http.NewRequest("HEAD", srv.URL+"/head", nil)
	res, err := rt.RoundTrip(req)
	assert.NilError(t, err)
	res.Body.Close()
	assert.Equal(t, get2(t, rt, srv.URL+"/after-head"), "/after-head")
	assert.Equal(t, conns.Load(), int32(1))
}

func get2(t *testing.T, rt http.RoundTripper, url string) string {
	t.Helper()
	_, body := get(t, rt, url)
	return body
}

// An answer closed before its end, one that asks to close, and one cut by its context each
// close their connection: the next request gets its own answer on a new one, never the rest
// of the last.
func TestInlineTransportNeverReusesAnUnfinishedAnswer(t *testing.T) {
	srv, conns := echoServer(t)
	rt := newInlineTransport()

	req, _ := http.NewRequest("GET", srv.URL+"/big", nil)
	res, err := rt.RoundTrip(req)
	assert.NilError(t, err)
	io.ReadFull(res.Body, make([]byte, 100))
	res.Body.Close()
	assert.Equal(t, get2(t, rt, srv.URL+"/after-big"), "/after-big")
	assert.Equal(t, conns.Load(), int32(2))

	assert.Equal(t, get2(t, rt, srv.URL+"/closing?close"), "/closing")
	assert.Equal(t, get2(t, rt, srv.URL+"/after-close"), "/after-close")
	assert.Equal(t, conns.Load(), int32(3))

	// An answer whose rest is not there yet (with /big, the whole rest could already be read
	// before the context's end reaches the connection).
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", srv.URL+"/hold", nil)
	res, err = rt.RoundTrip(req)
	assert.NilError(t, err)
	io.ReadFull(res.Body, make([]byte, 100))
	cancel()
	_, err = io.ReadAll(res.Body)
	assert.Assert(t, err != nil, "a read after the context ended should fail")
	res.Body.Close()
	assert.Equal(t, get2(t, rt, srv.URL+"/after-cancel"), "/after-cancel")
	assert.Equal(t, conns.Load(), int32(4))
}

// rawServer accepts connections and hands each to serve, in order (0, 1, ...).
func rawServer(t *testing.T, serve func(n int, c net.Conn, r *bufio.Reader)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(n, c, bufio.NewReader(c)) }()
		}
	}()
	return "http://" + l.Addr().String()
}

// answer reads one request from r and answers it with its path, keeping the connection open.
func answer(c net.Conn, r *bufio.Reader) bool {
	req, err := http.ReadRequest(r)
	if err != nil {
		return false
	}
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
	return true
}

// A server that closes an idle connection without a word (a gateway's idle timeout) costs
// nothing: a GET sent on it is sent again on a new one. A closed connection is not even
// tried when the close has arrived before the request.
func TestInlineTransportServerClosedIdleConnection(t *testing.T) {
	// Connection 0 answers once, then reads the next request and closes without answering.
	url := rawServer(t, func(n int, c net.Conn, r *bufio.Reader) {
		if n == 0 {
			answer(c, r)
			http.ReadRequest(r)
			return
		}
		for answer(c, r) {
		}
	})
	rt := newInlineTransport()
	assert.Equal(t, get2(t, rt, url+"/one"), "/one")
	assert.Equal(t, get2(t, rt, url+"/two"), "/two")

	// Connection 0 of this server answers and closes at once: the pool sees the close.
	var accepted atomic.Int32
	url = rawServer(t, func(n int, c net.Conn, r *bufio.Reader) {
		accepted.Add(1)
		if n == 0 {
			answer(c, r)
			return
		}
		for answer(c, r) {
		}
	})
	assert.Equal(t, get2(t, rt, url+"/one"), "/one")
	time.Sleep(50 * time.Millisecond) // the close reaches this side
	assert.Equal(t, get2(t, rt, url+"/two"), "/two")
	assert.Equal(t, accepted.Load(), int32(2))
}

// A new connection that fails is not tried again: the error is the caller's (the read
// client's own retries decide).
func TestInlineTransportNewConnectionFails(t *testing.T) {
	var accepted atomic.Int32
	url := rawServer(t, func(n int, c net.Conn, r *bufio.Reader) {
		accepted.Add(1)
		http.ReadRequest(r)
	})
	req, _ := http.NewRequest("GET", url+"/x", nil)
	_, err := newInlineTransport().RoundTrip(req)
	assert.Assert(t, err != nil)
	assert.Equal(t, accepted.Load(), int32(1))
}

// Bytes a server sends on an idle connection (a "408 Request Timeout" before it closes) are
// never read as the next request's answer.
func TestInlineTransportUnsolicitedBytes(t *testing.T) {
	url := rawServer(t, func(n int, c net.Conn, r *bufio.Reader) {
		if n == 0 {
			answer(c, r)
			time.Sleep(20 * time.Millisecond) // the connection is idle in the pool by now
			io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 7\r\n\r\ntimeout")
			time.Sleep(time.Second)
			return
		}
		for answer(c, r) {
		}
	})
	rt := newInlineTransport()
	assert.Equal(t, get2(t, rt, url+"/one"), "/one")
	time.Sleep(100 * time.Millisecond)
	status, body := get(t, rt, url+"/two")
	assert.Equal(t, status, http.StatusOK)
	assert.Equal(t, body, "/two")
}

// Only bodiless GETs and HEADs over plain HTTP, not through a proxy, go inline; everything
// else goes to net/http's Transport.
func TestInlineTransportHandles(t *testing.T) {
	rt := newInlineTransport()
	for _, c := range []struct {
		method, url string
		body        io.Reader
		want        bool
	}{
		{"GET", "http://127.0.0.1:9200/_snapshot/r/s", nil, true},
		{"HEAD", "http://127.0.0.1:9200/index", nil, true},
		{"GET", "http://127.0.0.1:9200/_search", strings.NewReader("{}"), false},
		{"PUT", "http://127.0.0.1:9200/_snapshot/r/s", nil, false},
		{"POST", "http://127.0.0.1:9200/_snapshot/r/s/_restore", nil, false},
		{"DELETE", "http://127.0.0.1:9200/_snapshot/r/s", nil, false},
		{"GET", "https://127.0.0.1:9200/_snapshot/r/s", nil, false},
	} {
		req, _ := http.NewRequest(c.method, c.url, c.body)
		assert.Equal(t, rt.handles(req), c.want, "%s %s", c.method, c.url)
	}
	rt.fallback.Proxy = func(*http.Request) (*url.URL, error) { return &url.URL{Scheme: "http", Host: "proxy:3128"}, nil }
	req, _ := http.NewRequest("GET", "http://127.0.0.1:9200/_snapshot/r/s", nil)
	assert.Assert(t, !rt.handles(req), "a request for a proxy went inline")
}

// Many callers at once, some giving up on their answers midway: every answer read whole is
// the answer to its own request (a connection given back too early would mix them up).
func TestInlineTransportConcurrentAnswersStayApart(t *testing.T) {
	srv, _ := echoServer(t)
	rt := newInlineTransport()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 50 {
				path := fmt.Sprintf("/g%d/r%d", g, i)
				query := []string{"", "?chunked"}[rnd.IntN(2)]
				req, _ := http.NewRequest("GET", srv.URL+path+query, nil)
				res, err := rt.RoundTrip(req)
				if err != nil {
					t.Errorf("GET %s: %v", path, err)
					return
				}
				if rnd.IntN(4) == 0 { // give up after a few bytes
					io.ReadFull(res.Body, make([]byte, 3))
					res.Body.Close()
					continue
				}
				body, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil || string(body) != path {
					t.Errorf("GET %s: got %q, %v", path, body, err)
				}
			}
		}()
	}
	wg.Wait()
}

// An interim answer (a proxy's 103 Early Hints) is skipped: the request gets the final answer,
// and the next request its own, not the one left behind.
func TestInlineTransportInterimAnswers(t *testing.T) {
	url := rawServer(t, func(n int, c net.Conn, r *bufio.Reader) {
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
			time.Sleep(5 * time.Millisecond)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
		}
	})
	rt := newInlineTransport()
	for _, path := range []string{"/backup-A", "/backup-B"} {
		status, body := get(t, rt, url+path)
		assert.Equal(t, status, http.StatusOK)
		assert.Equal(t, body, path)
	}
}

// A URL without a port is dialled on port 80, as net/http does.
func TestInlineTransportHostPort(t *testing.T) {
	for raw, want := range map[string]string{
		"http://es/x": "es:80", "http://es:9200/x": "es:9200", "http://[::1]/x": "[::1]:80", "http://127.0.0.1:9200": "127.0.0.1:9200",
	} {
		u, _ := url.Parse(raw)
		assert.Equal(t, hostPort(u), want, raw)
	}
}

// A request whose context has already ended fails without taking (and closing) a pooled
// connection.
func TestInlineTransportEndedContextKeepsThePool(t *testing.T) {
	srv, conns := echoServer(t)
	rt := newInlineTransport()
	assert.Equal(t, get2(t, rt, srv.URL+"/one"), "/one")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/cancelled", nil)
	_, err := rt.RoundTrip(req)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, get2(t, rt, srv.URL+"/two"), "/two")
	assert.Equal(t, conns.Load(), int32(1))
}

// Connections idle for longer than the idle timeout are closed when the pool is next used,
// the ones below the top of the pool too.
func TestInlineTransportClosesOldIdleConnections(t *testing.T) {
	srv, conns := echoServer(t)
	rt := newInlineTransport()
	rt.idleTimeout = 100 * time.Millisecond
	var bodies []io.ReadCloser
	for i := range 3 { // three answers open at once: three connections
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/%d", srv.URL, i), nil)
		res, err := rt.RoundTrip(req)
		assert.NilError(t, err)
		bodies = append(bodies, res.Body)
	}
	for _, b := range bodies {
		io.ReadAll(b)
		b.Close()
	}
	assert.Equal(t, len(rt.idle[hostPort(mustURL(srv.URL))]), 3)
	time.Sleep(150 * time.Millisecond)
	assert.Equal(t, get2(t, rt, srv.URL+"/later"), "/later")
	assert.Equal(t, len(rt.idle[hostPort(mustURL(srv.URL))]), 1, "the old connections should be closed, the new one kept")
	assert.Equal(t, conns.Load(), int32(4))
}

func mustURL(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u
}
