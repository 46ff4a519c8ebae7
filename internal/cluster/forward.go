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

// Directory says where each lease's holder answers. It caches a lease's
// row for MaxAge, and forgets it when a forward to it fails, so a new
// holder is found within one request of the old one's end.
type Directory struct {
	DB     *pgxpool.Pool
	MaxAge time.Duration // default 1s
	// Self is this node: holding a lease but not serving yet, it is no
	// holder to forward to (that would forward to itself).
	Self string

	mu     sync.Mutex
	cached map[string]cachedHolder
}

type cachedHolder struct {
	h  Holder
	at time.Time
}

// lookupTimeout bounds a lookup of a lease's holder.
const lookupTimeout = 2 * time.Second

// ErrNotAdvertised: a node holds the lease but is still opening its
// warehouse, so it does not answer yet.
var ErrNotAdvertised = errors.New("the leader is still starting")

// Leader returns the current holder of the named lease and its addresses.
func (d *Directory) Leader(ctx context.Context, name string) (Holder, error) {
	maxAge := d.MaxAge
	if maxAge <= 0 {
		maxAge = time.Second
	}
	d.mu.Lock()
	if c, ok := d.cached[name]; ok && time.Since(c.at) < maxAge {
		d.mu.Unlock()
		return c.h, nil
	}
	d.mu.Unlock()
	// A PostgreSQL that hangs must not hold partners' requests: they get
	// their 503 and send again.
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	h, err := CurrentHolder(ctx, d.DB, name)
	if err == nil && (h.HTTPAddr == "" || h.Node == d.Self) {
		err = ErrNotAdvertised
	}
	if err != nil {
		return Holder{}, err
	}
	d.mu.Lock()
	if d.cached == nil {
		d.cached = map[string]cachedHolder{}
	}
	d.cached[name] = cachedHolder{h, time.Now()}
	d.mu.Unlock()
	return h, nil
}

// Forget drops the cached holder of a lease.
func (d *Directory) Forget(name string) {
	d.mu.Lock()
	delete(d.cached, name)
	d.mu.Unlock()
}

// Forwarder sends each request to the holder of the lease that lease names
// for it (the shard of the request's partner), unchanged, and the answer
// back. When nobody answers for that lease it says so with 503 and
// Retry-After, in the API's error shape, and a partner sends the request
// again (notifications and batches are idempotent).
func Forwarder(dir *Directory, lease func(*http.Request) string, log *slog.Logger) http.Handler {
	type target struct{}
	type forward struct {
		url   *url.URL
		lease string
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(target{}).(forward).url)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		// Streams (a batch's body, a long export's answer) go as they come.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			dir.Forget(r.Context().Value(target{}).(forward).lease)
			log.Warn("forwarding failed", "method", r.Method, "path", r.URL.Path, "err", err)
			// It may have died after taking the request and before its
			// answer: sending again is safe, not "nothing was taken".
			unavailable(w, "the node holding this partner's warehouse did not answer; send the request again (a notification or batch it had already taken is recognised, not applied twice)")
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := lease(r)
		h, err := dir.Leader(r.Context(), name)
		if err != nil {
			log.Warn("nobody to forward to", "lease", name, "path", r.URL.Path, "err", err)
			unavailable(w, "no node holds this partner's warehouse right now (one is taking over); nothing was taken, send the request again")
			return
		}
		f := forward{url: &url.URL{Scheme: "http", Host: h.HTTPAddr}, lease: name}
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), target{}, f)))
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
// end), to the SQL endpoint of the lease's holder, until either side
// closes.
func ForwardConn(conn net.Conn, dir *Directory, lease string, log *slog.Logger) {
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := dir.Leader(ctx, lease)
	if err == nil && h.SQLAddr == "" {
		err = errors.New("the leader has no SQL endpoint")
	}
	var up net.Conn
	if err == nil {
		up, err = (&net.Dialer{}).DialContext(ctx, "tcp", h.SQLAddr)
	}
	if err != nil {
		dir.Forget(lease)
		log.Warn("no leader to forward an analyst's connection to", "lease", lease, "err", err)
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
