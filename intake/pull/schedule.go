package pull

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/flatfiler/flatfiler/intake/harvest"
	"github.com/flatfiler/flatfiler/internal/durable"
	"github.com/flatfiler/flatfiler/pipeline"
)

// PartnerRun is a scheduled harvest of every user of a partner, and when
// the next one is due.
type PartnerRun struct {
	Partner  string `json:"partner_id"`
	Schedule string `json:"schedule"`
	// NextAt is when the next run starts (drawn once per run, with the
	// schedule's jitter).
	NextAt time.Time `json:"next_at"`
	Status string    `json:"status,omitempty"` // Working or Complete; empty: never ran
	// Users, Applied and Failed count the last run's users and how their
	// harvests ended (applied whole or in part, or not at all).
	Users      int       `json:"users"`
	Applied    int       `json:"applied"`
	Failed     int       `json:"failed"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// scheduler is the partner-level state of Runs.
type scheduler struct {
	mu       sync.Mutex
	partners map[string]*PartnerRun
	rng      *rand.Rand
}

// Partners lists the partners with a pull endpoint, for the schedule.
type Partners func() map[string]*harvest.Config

// Due starts the scheduled runs due at now, each in the background, one
// per partner at a time; it returns the partners it started. A run under
// way when the process stopped is started again, for the users not
// harvested since it began.
func (rs *Runs) Due(ctx context.Context, partners Partners, now time.Time) []string {
	s := &rs.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.partners == nil {
		s.partners = map[string]*PartnerRun{}
		s.rng = rand.New(rand.NewPCG(uint64(now.UnixNano()), 0x6861727665737421))
	}
	var started []string
	for id, cfg := range partners() {
		sched, err := harvest.ParseSchedule(cfg.Schedule)
		if err != nil || sched == nil {
			continue
		}
		p := s.partners[id]
		if p == nil {
			p = rs.loadPartner(id)
			s.partners[id] = p
		}
		if p.Schedule != cfg.Schedule || p.NextAt.IsZero() {
			p.Schedule, p.NextAt = cfg.Schedule, sched.Next(p.StartedAt, now, s.rng)
			rs.savePartner(p)
		}
		resume := p.Status == Working && !rs.partnerActive(id)
		if !resume && (p.Status == Working || now.Before(p.NextAt)) {
			continue
		}
		if !resume {
			p.StartedAt = now.UTC()
		}
		p.Status, p.Users, p.Applied, p.Failed, p.FinishedAt = Working, 0, 0, 0, time.Time{}
		p.NextAt = sched.Next(p.StartedAt, now, s.rng)
		rs.savePartner(p)
		rs.active.Store(id, true)
		started = append(started, id)
		rs.wg.Add(1)
		go func(p PartnerRun, cfg *harvest.Config) {
			defer rs.wg.Done()
			defer rs.active.Delete(p.Partner)
			rs.runPartner(ctx, p, cfg)
		}(*p, cfg)
	}
	return started
}

func (rs *Runs) partnerActive(id string) bool {
	_, ok := rs.active.Load(id)
	return ok
}

// runPartner harvests every user of the partner that has not been
// harvested since the run began, as many at once as the endpoint takes
// requests.
func (rs *Runs) runPartner(ctx context.Context, p PartnerRun, cfg *harvest.Config) {
	log := rs.H.logger()
	users, err := rs.H.Store.UserIDs(ctx, p.Partner)
	if err != nil {
		log.Error("scheduled harvest: users not listed", "partner", p.Partner, "err", err)
		users = nil
	}
	log.Info("scheduled harvest started", "partner", p.Partner, "users", len(users))
	var mu sync.Mutex
	applied, failed := 0, 0
	slots := make(chan struct{}, cfg.Slots())
	var wg sync.WaitGroup
	for _, u := range users {
		if ctx.Err() != nil {
			break
		}
		if r, ok := rs.Get(p.Partner, u); ok && r.Status == Complete && !r.StartedAt.Before(p.StartedAt) {
			continue // harvested since this run began (before a restart)
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			r, err := rs.runNow(p.Partner, cfg, u)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || r.Outcome == pipeline.StatusError {
				failed++
			} else {
				applied++
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // still working on disk: the next start goes on with it
	}
	s := &rs.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.partners[p.Partner]
	q.Status, q.Users, q.Applied, q.Failed, q.FinishedAt = Complete, len(users), applied, failed, rs.H.now().UTC()
	rs.savePartner(q)
	log.Info("scheduled harvest finished", "partner", p.Partner, "users", len(users), "applied", applied, "failed", failed)
}

// runNow starts a harvest of the user (or joins the one under way) and
// waits for its end.
func (rs *Runs) runNow(partnerID string, cfg *harvest.Config, user string) (Run, error) {
	_, _, err := rs.Start(partnerID, cfg, user)
	if err != nil {
		return Run{}, err
	}
	done := rs.doneOf(partnerID, user)
	<-done
	r, _ := rs.Get(partnerID, user)
	return r, nil
}

// PartnerRun returns the partner's scheduled run state.
func (rs *Runs) PartnerRun(id string) (PartnerRun, bool) {
	s := &rs.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.partners[id]
	if !ok {
		return PartnerRun{}, false
	}
	return *p, true
}

func (rs *Runs) partnerPath(id string) string {
	return filepath.Join(rs.Dir, "partners", id+".json")
}

func (rs *Runs) loadPartner(id string) *PartnerRun {
	p := &PartnerRun{Partner: id}
	if rs.Dir == "" {
		return p
	}
	data, err := os.ReadFile(rs.partnerPath(id))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			rs.H.logger().Warn("harvest schedule state unreadable; starting afresh", "partner", id, "err", err)
		}
		return p
	}
	if err := json.Unmarshal(data, p); err != nil {
		rs.H.logger().Warn("harvest schedule state unreadable; starting afresh", "partner", id, "err", err)
		return &PartnerRun{Partner: id}
	}
	return p
}

func (rs *Runs) savePartner(p *PartnerRun) {
	if rs.Dir == "" {
		return
	}
	data, _ := json.MarshalIndent(p, "", "  ") // plain fields: it marshals
	path := rs.partnerPath(p.Partner)
	err := os.MkdirAll(filepath.Dir(path), 0o700)
	if err == nil {
		err = durable.WriteFile(path, data, 0o600)
	}
	if err != nil {
		// The schedule goes on from memory; a restart would start afresh.
		rs.H.logger().Error("harvest schedule state not saved", "partner", p.Partner, "err", err)
	}
}

// Schedule runs Due every minute until ctx ends.
func (rs *Runs) Schedule(ctx context.Context, partners Partners) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		rs.Due(ctx, partners, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
