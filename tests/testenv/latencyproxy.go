package testenv

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Direction of the bytes through a [LatencyProxy].
type Direction int

const (
	ToRedis  Direction = iota // client → Redis: commands and scripts
	ToClient                  // Redis → client: replies
)

// A LatencyProxy is a TCP proxy in front of a real Redis that delays or holds
// the bytes of either direction on demand, while still accepting
// connections: a slow or hung server without owning it, and a way to make a
// command reach Redis after its caller gave up on it.
type LatencyProxy struct {
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
	dir  Direction
	gate chan struct{} // guarded by LatencyProxy.mu; closed while bytes flow
}

// openGate is a gate that never holds.
var openGate = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// NewLatencyProxy starts a proxy in front of the Redis at redisURL; it stops
// when t ends.
func NewLatencyProxy(t testing.TB, redisURL string) *LatencyProxy {
	t.Helper()
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &LatencyProxy{ln: ln, upstream: opts.Addr, newGate: [2]chan struct{}{openGate, openGate},
		pipes: map[*pipe]struct{}{}, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL is a redis:// URL that reaches Redis through the proxy.
func (p *LatencyProxy) URL() string { return "redis://" + p.ln.Addr().String() + "/0" }

// SetDelay makes every chunk read in dir from now on wait d before it is
// passed on (in order: a connection's later chunks wait behind it).
func (p *LatencyProxy) SetDelay(dir Direction, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay[dir] = d
}

// Hold stops the bytes in dir, on the open connections and on new ones, until
// Release (or, for new connections, flowNew).
func (p *LatencyProxy) Hold(dir Direction) {
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

// FlowNew lets connections opened from now on pass bytes in dir; those held
// stay held.
func (p *LatencyProxy) FlowNew(dir Direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.newGate[dir] = openGate
}

// Release passes on everything held in dir and stops holding.
func (p *LatencyProxy) Release(dir Direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[dir] != nil {
		close(p.held[dir])
		p.held[dir] = nil
	}
	p.newGate[dir] = openGate
}

// Cut closes the connections open now, as a network failure would; held
// bytes are dropped.
func (p *LatencyProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Freeze holds both Directions: a hung server. thaw undoes it.
func (p *LatencyProxy) Freeze() { p.Hold(ToRedis); p.Hold(ToClient) }
func (p *LatencyProxy) Thaw()   { p.Release(ToRedis); p.Release(ToClient) }

func (p *LatencyProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *LatencyProxy) accept() {
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
		in := &pipe{dir: ToRedis, gate: p.newGate[ToRedis]}
		out := &pipe{dir: ToClient, gate: p.newGate[ToClient]}
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
func (p *LatencyProxy) run(pp *pipe, dst, src net.Conn) {
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
func (p *LatencyProxy) waitGate(pp *pipe) {
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

func (p *LatencyProxy) isCut(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.conns[c]
	return !ok
}

func (p *LatencyProxy) close() {
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
