package harvest

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	for s, ok := range map[string]bool{
		"": true, "every 6h": true, "every 5m": true, "daily 02:00-04:00": true, "daily 23:30-00:30": true,
		"every 1m": false, "every": false, "daily 02:00": false, "daily 2-4": false, "daily 02:00-02:00": false, "hourly": false,
	} {
		if _, err := ParseSchedule(s); (err == nil) != ok {
			t.Errorf("ParseSchedule(%q): %v", s, err)
		}
	}
}

func TestScheduleNext(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	every, _ := ParseSchedule("every 6h")
	for range 100 {
		if n := every.Next(now, now, rng); n.Before(now.Add(6*time.Hour)) || n.After(now.Add(6*time.Hour+36*time.Minute)) {
			t.Fatalf("every 6h after a run now: %s", n)
		}
		if n := every.Next(time.Time{}, now, rng); n.Before(now) || n.After(now.Add(36*time.Minute)) {
			t.Fatalf("every 6h, never run: %s", n)
		}
	}
	daily, _ := ParseSchedule("daily 02:00-04:00")
	overnight, _ := ParseSchedule("daily 23:30-00:30")
	for range 100 {
		// Past today's window: tomorrow's.
		n := daily.Next(time.Time{}, now, rng)
		if n.Before(time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)) || !n.Before(time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)) {
			t.Fatalf("daily 02:00-04:00 at 10:00: %s", n)
		}
		// Inside the window, having run in it: the next day's.
		in := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
		if n := daily.Next(in, in, rng); n.Before(time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC)) {
			t.Fatalf("daily, run at 03:00: next %s", n)
		}
		// Inside the window, not run: now or later in it.
		if n := daily.Next(time.Time{}, in, rng); n.Before(in) || !n.Before(time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)) {
			t.Fatalf("daily at 03:00, never run: %s", n)
		}
		n = overnight.Next(time.Time{}, now, rng)
		if n.Before(time.Date(2026, 12, 6, 23, 30, 0, 0, time.UTC)) || !n.Before(time.Date(2026, 12, 7, 0, 30, 0, 0, time.UTC)) {
			t.Fatalf("daily 23:30-00:30 at 10:00: %s", n)
		}
	}
}
