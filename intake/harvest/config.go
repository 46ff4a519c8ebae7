package harvest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"
)

// Config is a partner's pull endpoint, stored with its other secrets
// (`flatfiler partner set --harvest-url --harvest-key ...`).
type Config struct {
	URL string `json:"url"`
	// Key is the shared secret of the signatures, in hex (KeySize bytes).
	Key string `json:"key"`
	// Schedule is when every user is harvested (ParseSchedule); empty:
	// only on request (POST users/:user_id:/harvest).
	Schedule string `json:"schedule,omitempty"`
	// Concurrency bounds the requests to the endpoint at once; default 2.
	Concurrency int `json:"concurrency,omitempty"`
	// Timeout bounds each request, its answer read whole; default 30s.
	Timeout Duration `json:"timeout,omitempty"`
	// Retries are the further attempts of a request that timed out or
	// met a 5xx or 429; default 2. A bad signature is not retried.
	Retries *int `json:"retries,omitempty"`
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Defaults.
const (
	DefaultConcurrency = 2
	DefaultTimeout     = 30 * time.Second
	DefaultRetries     = 2
)

// Check reports what is wrong with the configuration, naming the flag.
func (c *Config) Check() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--harvest-url %q is not an http or https URL", c.URL)
	}
	if _, err := ParseKey(c.Key); err != nil {
		return fmt.Errorf("--harvest-key: %w", err)
	}
	if _, err := ParseSchedule(c.Schedule); err != nil {
		return fmt.Errorf("--harvest-schedule: %w", err)
	}
	switch {
	case c.Concurrency < 0 || c.Concurrency > 64:
		return fmt.Errorf("--harvest-concurrency %d is not between 1 and 64", c.Concurrency)
	case c.Timeout < 0:
		return fmt.Errorf("--harvest-timeout %s is negative", time.Duration(c.Timeout))
	case c.Retries != nil && (*c.Retries < 0 || *c.Retries > 10):
		return fmt.Errorf("--harvest-retries %d is not between 0 and 10", *c.Retries)
	}
	return nil
}

// Slots is the requests to the endpoint at once.
func (c *Config) Slots() int { return cmp.Or(c.Concurrency, DefaultConcurrency) }

// RequestTimeout bounds one request.
func (c *Config) RequestTimeout() time.Duration {
	return cmp.Or(time.Duration(c.Timeout), DefaultTimeout)
}

// Tries is how many times a request is sent at most.
func (c *Config) Tries() int {
	if c.Retries == nil {
		return DefaultRetries + 1
	}
	return *c.Retries + 1
}

// Schedule is when a partner's users are harvested: every Interval, or
// once a day at a random time in [From, To) UTC. Either way with jitter,
// so that partners configured alike do not all start at once.
type Schedule struct {
	Interval time.Duration // "every 6h"
	From, To time.Duration // "daily 02:00-04:00": offsets from midnight UTC
}

// ParseSchedule reads "every DURATION" (at least 5m) or "daily HH:MM-HH:MM"
// (UTC; the window may pass midnight); empty is no schedule.
func ParseSchedule(s string) (*Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	kind, arg, _ := strings.Cut(s, " ")
	switch kind {
	case "every":
		d, err := time.ParseDuration(strings.TrimSpace(arg))
		if err != nil || d < 5*time.Minute {
			return nil, fmt.Errorf("%q: want \"every DURATION\" of at least 5m, e.g. \"every 6h\"", s)
		}
		return &Schedule{Interval: d}, nil
	case "daily":
		from, to, ok := strings.Cut(strings.TrimSpace(arg), "-")
		f, err1 := clock(from)
		t, err2 := clock(to)
		if !ok || err1 != nil || err2 != nil || f == t {
			return nil, fmt.Errorf("%q: want \"daily HH:MM-HH:MM\" (UTC), e.g. \"daily 02:00-04:00\"", s)
		}
		return &Schedule{From: f, To: t}, nil
	}
	return nil, fmt.Errorf("%q: want \"every DURATION\" or \"daily HH:MM-HH:MM\"", s)
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, err
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// Next is when the run after one at last (zero: never ran) starts: an
// interval later with up to a tenth of it added at random, or at a random
// moment of the next daily window that starts after last.
func (s *Schedule) Next(last, now time.Time, rng *rand.Rand) time.Time {
	if s.Interval > 0 {
		if last.IsZero() {
			return now.Add(time.Duration(rng.Int64N(int64(s.Interval/10) + 1)))
		}
		return last.Add(s.Interval + time.Duration(rng.Int64N(int64(s.Interval/10)+1)))
	}
	width := s.To - s.From
	if width < 0 {
		width += 24 * time.Hour
	}
	after := now
	if last.After(after) {
		after = last
	}
	day := after.UTC().Truncate(24 * time.Hour)
	for {
		start := day.Add(s.From)
		if start.Add(width).After(after) && (last.IsZero() || start.After(last)) {
			at := start.Add(time.Duration(rng.Int64N(int64(width))))
			if at.Before(after) {
				at = after
			}
			return at
		}
		day = day.Add(24 * time.Hour)
	}
}
