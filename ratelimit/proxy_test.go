package ratelimit_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A direction of the bytes through a [latencyProxy].
type direction int

const (
	toRedis  direction = iota // client → Redis: commands and scripts
	toClient                  // Redis → client: replies
)

// A latencyProxy is a TCP proxy in front of a real Redis that delays or holds
// the bytes of either direction on demand, while still accepting
// connections: a slow or hung server without owning it, and a way to make a
// command reach Redis after its caller gave up on it.
type latencyProxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu      sync.Mutex
	delay   [2]time.Duration   // added to each chunk read from now on
	held    [2]chan struct{}   // the current hold's gate (closed: released); nil when none
	newGate [2]chan struct{}   // the gate new pipes start with
	pipes   map[*pipe]struct{} // live pipes
	conns   map[net.Conn]struct{}
	closed  bool
}

// A pipe is one direction of one proxied connection.
type pipe struct {
	dir  direction
	gate chan struct{} // guarded by latencyProxy.mu; closed while bytes flow
}

// openGate is a gate that never holds.
var openGate = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newLatencyProxy(t *testing.T, redisURL string) *latencyProxy {
	t.Helper()
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &latencyProxy{ln: ln, upstream: opts.Addr, newGate: [2]chan struct{}{openGate, openGate},
		pipes: map[*pipe]struct{}{}, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *latencyProxy) url() string { return "redis://" + p.ln.Addr().String() + "/0" }

// setDelay makes every chunk read in dir from now on wait d before it is
// passed on (in order: a connection's later chunks wait behind it).
func (p *latencyProxy) setDelay(dir direction, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay[dir] = d
}

// hold stops the bytes in dir, on the open connections and on new ones, until
// release (or, for new connections, flowNew).
func (p *latencyProxy) hold(dir direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[dir] == nil {
		p.held[dir] = make(chan struct{})
	}
	p.newGate[dir] = p.held[dir]
	for pp := range p.pipes {
		if pp.dir == dir {
			pp.gate = p.held[dir]
		}
	}
}

// flowNew lets connections opened from now on pass bytes in dir; those held
// stay held.
func (p *latencyProxy) flowNew(dir direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.newGate[dir] = openGate
}

// release passes on everything held in dir and stops holding.
func (p *latencyProxy) release(dir direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[dir] != nil {
		close(p.held[dir])
		p.held[dir] = nil
	}
	p.newGate[dir] = openGate
}

// cut closes the connections open now, as a network failure would; held
// bytes are dropped.
func (p *latencyProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// freeze holds both directions: a hung server. thaw undoes it.
func (p *latencyProxy) freeze() { p.hold(toRedis); p.hold(toClient) }
func (p *latencyProxy) thaw()   { p.release(toRedis); p.release(toClient) }

func (p *latencyProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *latencyProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c) || !p.track(up) {
			c.Close()
			up.Close()
			return
		}
		p.mu.Lock()
		in := &pipe{dir: toRedis, gate: p.newGate[toRedis]}
		out := &pipe{dir: toClient, gate: p.newGate[toClient]}
		p.pipes[in], p.pipes[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.run(in, up, c)
		go p.run(out, c, up)
	}
}

// run copies src to dst, each chunk once its delay (counted from when it was
// read) has passed and while its gate is open. A chunk read before the
// client closed is still passed on: the close reaches Redis after it, as it
// would through a slow network.
func (p *latencyProxy) run(pp *pipe, dst, src net.Conn) {
	defer p.wg.Done()
	type chunk struct {
		b   []byte
		due time.Time
	}
	chunks := make(chan chunk, 1024)
	p.wg.Add(1)
	go func() { // the reader
		defer p.wg.Done()
		defer close(chunks)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				due := time.Now().Add(p.delay[pp.dir])
				p.mu.Unlock()
				chunks <- chunk{append([]byte(nil), buf[:n]...), due}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		dst.Close()
		src.Close()
		for range chunks { // let the reader end
		}
		p.mu.Lock()
		delete(p.pipes, pp)
		p.mu.Unlock()
	}()
	for c := range chunks {
		p.waitGate(pp)
		time.Sleep(time.Until(c.due))
		if p.isCut(src) {
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// waitGate returns once pp's gate is open.
func (p *latencyProxy) waitGate(pp *pipe) {
	for {
		p.mu.Lock()
		gate := pp.gate
		p.mu.Unlock()
		<-gate
		p.mu.Lock()
		same := pp.gate == gate
		p.mu.Unlock()
		if same {
			return
		}
	}
}

func (p *latencyProxy) isCut(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.conns[c]
	return !ok
}

func (p *latencyProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.delay = [2]time.Duration{}
	for d := range p.held {
		if p.held[d] != nil {
			close(p.held[d])
			p.held[d] = nil
		}
	}
	for pp := range p.pipes {
		pp.gate = openGate
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}
