package cluster

import (
	"net"
	"sync"
)

// Handoff is a listener fed with connections another listener accepted: a
// node keeps its SQL listener whatever its role, and hands each connection
// to its own SQL endpoint while it leads.
type Handoff struct {
	addr      net.Addr
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

// NewHandoff is a Handoff that says it listens on addr.
func NewHandoff(addr net.Addr) *Handoff {
	return &Handoff{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// Deliver hands c to Accept; false if the listener is closed (c is not
// taken).
func (l *Handoff) Deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

// Accept implements net.Listener.
func (l *Handoff) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *Handoff) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr implements net.Listener.
func (l *Handoff) Addr() net.Addr { return l.addr }
