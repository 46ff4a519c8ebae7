package cluster

import (
	"errors"
	"net"
	"testing"
)

func TestHandoff(t *testing.T) {
	l := NewHandoff(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5433})
	client, server := net.Pipe()
	defer client.Close()
	delivered := make(chan bool, 1)
	go func() { delivered <- l.Deliver(server) }()
	got, err := l.Accept()
	if err != nil || got != server || !<-delivered {
		t.Fatalf("Accept: %v, %v; want the delivered connection", got, err)
	}
	if l.Addr().String() != "127.0.0.1:5433" {
		t.Errorf("Addr %s", l.Addr())
	}
	l.Close()
	l.Close() // twice is harmless
	if l.Deliver(server) {
		t.Error("a closed listener took a connection: its caller would not forward it")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}
