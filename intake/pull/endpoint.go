package pull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/flatfiler/flatfiler/intake/harvest"
)

// MaxResponse bounds one answer of a partner's endpoint: a user's
// transactions of one account, about 300 bytes each.
const MaxResponse = 64 << 20

// endpoint is one partner's pull endpoint.
type endpoint struct {
	partner string
	cfg     harvest.Config
	key     []byte
	client  *http.Client
	ids     *requestIDs
	slots   chan struct{} // the endpoint's concurrency
	metrics *Metrics
}

// RequestError is a request the endpoint did not answer with a good
// response; it names the request and why.
type RequestError struct {
	Partner, What string // What: "accounts of user 42", ...
	ID            int64
	Err           error
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("partner %s, request %d (%s): %v", e.Partner, e.ID, e.What, e.Err)
}

func (e *RequestError) Unwrap() error { return e.Err }

// errStatus is an answer other than 200.
type errStatus struct{ code int }

func (e errStatus) Error() string { return fmt.Sprintf("the endpoint answered %d", e.code) }

// ask sends one request and returns the inner body of its verified
// response. Timeouts, 5xx and 429 are tried again (cfg.Retries); a
// response that is malformed, badly signed or for another request is not.
func (e *endpoint) ask(ctx context.Context, what string, inner []byte) ([]byte, error) {
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-e.slots }()
	id := e.ids.next()
	doc := harvest.Request{ID: id, SSOPartnerID: e.partner, Inner: inner}.Document(e.key)
	op := func() (inner []byte, err error) {
		defer func() { e.metrics.Requests.WithLabelValues(requestOutcome(err)).Inc() }()
		body, err := e.post(ctx, doc)
		if err != nil {
			var status errStatus
			if errors.As(err, &status) && status.code != http.StatusTooManyRequests && status.code < 500 {
				return nil, backoff.Permanent(err)
			}
			return nil, err
		}
		env, err := harvest.ReadEnvelope(bytes.NewReader(body), MaxResponse)
		if err == nil {
			err = env.CheckResponse(id, e.key)
		}
		if err != nil {
			return nil, backoff.Permanent(err)
		}
		return env.Inner, nil
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	out, err := backoff.Retry(ctx, op, backoff.WithBackOff(b), backoff.WithMaxTries(uint(e.cfg.Tries())),
		backoff.WithMaxElapsedTime(0))
	if err != nil {
		return nil, &RequestError{Partner: e.partner, What: what, ID: id, Err: err}
	}
	return out, nil
}

// post sends the document and reads the whole answer within the timeout.
func (e *endpoint) post(ctx context.Context, doc []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.URL, bytes.NewReader(doc))
	if err != nil {
		return nil, backoff.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/xml; charset=utf-8")
	res, err := e.client.Do(req)
	if err != nil {
		if errors.Is(err, errPrivate) {
			return nil, backoff.Permanent(err)
		}
		return nil, err
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, res.Body, MaxResponse)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, backoff.Permanent(fmt.Errorf("the answer is over %d bytes", MaxResponse))
		}
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, errStatus{res.StatusCode}
	}
	return buf.Bytes(), nil
}

// errPrivate is an endpoint that resolves to an address of this machine
// or its network, refused unless serve --harvest-allow-private.
var errPrivate = errors.New("the endpoint's address is loopback, private or link-local; serve --harvest-allow-private permits it")

// newClient makes the HTTP client of the endpoints. The address is checked
// after DNS, when the connection is made, so a name cannot resolve to a
// public address when checked and a private one when used.
func newClient(allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if !allowPrivate {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			ip := ap.Addr().Unmap()
			if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
				return errPrivate
			}
			return nil
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = dialer.DialContext
	transport.Proxy = nil
	return &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a redirect is an answer other than 200
	}}
}

// requestIDs numbers requests uniquely per day, as the spec asks: the
// milliseconds since midnight UTC, or one more than the last if that is
// not more.
type requestIDs struct {
	mu   sync.Mutex
	day  time.Time
	last int64
	now  func() time.Time
}

func (r *requestIDs) next() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now().UTC()
	day := now.Truncate(24 * time.Hour)
	id := now.Sub(day).Milliseconds()
	if day.Equal(r.day) && id <= r.last {
		id = r.last + 1
	}
	r.day, r.last = day, id
	return id
}
