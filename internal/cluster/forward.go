package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Directory says where the leader answers. It caches the lease's row for
// MaxAge, and forgets it when a forward to it fails, so a new leader is
// found within one request of the old one's end.
type Directory struct {
	DB     *pgxpool.Pool
	Name   string
	MaxAge time.Duration // default 1s
	// Self is this node: holding the lease but not serving yet, it is no
	// leader to forward to (that would forward to itself).
	Self string

	mu     sync.Mutex
	cached Holder
	at     time.Time
}

// ErrNotAdvertised: a node holds the lease but is still opening the
// warehouse, so it does not answer yet.
var ErrNotAdvertised = errors.New("the leader is still starting")

// Leader returns the current leader and its addresses.
func (d *Directory) Leader(ctx context.Context) (Holder, error) {
	maxAge := d.MaxAge
	if maxAge <= 0 {
		maxAge = time.Second
	}
	d.mu.Lock()
	if d.cached.Node != "" && time.Since(d.at) < maxAge {
		h := d.cached
		d.mu.Unlock()
		return h, nil
	}
	d.mu.Unlock()
	h, err := CurrentHolder(ctx, d.DB, d.Name)
	if err == nil && (h.HTTPAddr == "" || h.Node == d.Self) {
		err = ErrNotAdvertised
	}
	if err != nil {
		return Holder{}, err
	}
	d.mu.Lock()
	d.cached, d.at = h, time.Now()
	d.mu.Unlock()
	return h, nil
}

// Forget drops the cached leader.
func (d *Directory) Forget() {
	d.mu.Lock()
	d.cached = Holder{}
	d.mu.Unlock()
}

// Forwarder sends every request to the leader's HTTP address, unchanged,
// and the answer back. When no leader answers it says so with 503 and
// Retry-After, in the API's error shape: the request was not taken, and
// a partner sends it again (notifications and batches are idempotent).
func Forwarder(dir *Directory, log *slog.Logger) http.Handler {
	type target struct{}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(target{}).(*url.URL))
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		// Streams (a batch's body, a long export's answer) go as they come.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			dir.Forget()
			log.Warn("forwarding to the leader failed", "method", r.Method, "path", r.URL.Path, "err", err)
			unavailable(w, "the node holding the warehouse did not answer; nothing was taken, send the request again")
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, err := dir.Leader(r.Context())
		if err != nil {
			log.Warn("no leader to forward to", "path", r.URL.Path, "err", err)
			unavailable(w, "no node holds the warehouse right now (one is taking over); nothing was taken, send the request again")
			return
		}
		u := &url.URL{Scheme: "http", Host: h.HTTPAddr}
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), target{}, u)))
	})
}

func unavailable(w http.ResponseWriter, message string) {
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	var body struct {
		Error struct {
			Message string   `json:"message"`
			Data    []string `json:"data"`
		} `json:"error"`
	}
	body.Error.Message, body.Error.Data = message, []string{message}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}

// ForwardConn pipes a connection, bytes as they are (TLS included, end to
// end), to the leader's SQL endpoint, until either side closes.
func ForwardConn(conn net.Conn, dir *Directory, log *slog.Logger) {
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := dir.Leader(ctx)
	if err == nil && h.SQLAddr == "" {
		err = errors.New("the leader has no SQL endpoint")
	}
	var up net.Conn
	if err == nil {
		up, err = (&net.Dialer{}).DialContext(ctx, "tcp", h.SQLAddr)
	}
	if err != nil {
		dir.Forget()
		log.Warn("no leader to forward an analyst's connection to", "err", err)
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, conn)
	go pipe(conn, up)
	<-done
	<-done
}
