package warehouse

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Profile is what the spec's users carry that flat files and push batches
// do not: set by the API's POST and PUT users, kept when a file updates
// the user, removed with the user.
type Profile struct {
	User       string // partner_customer_id
	Login      *string
	BirthYear  *int
	Sex        *string // Male or Female
	CustomTags []string
}

// storeProfiles replaces the profiles of the load's options, in the
// load's transaction.
func (l *Load) storeProfiles(ctx context.Context) error {
	now := time.Now().UTC()
	for _, p := range l.opts.Profiles {
		if _, err := l.conn.ExecContext(ctx, `DELETE FROM user_profiles WHERE partner_id = ? AND partner_customer_id = ?`,
			l.opts.Partner, p.User); err != nil {
			return fmt.Errorf("warehouse: profile of %s: %w", p.User, err)
		}
		tags, err := json.Marshal(append([]string{}, p.CustomTags...))
		if err != nil {
			return err
		}
		if _, err := l.conn.ExecContext(ctx, `INSERT INTO user_profiles VALUES (?, ?, ?, ?, ?, from_json(?::JSON, '["VARCHAR"]'), ?)`,
			l.opts.Partner, p.User, p.Login, p.BirthYear, p.Sex, string(tags), now); err != nil {
			return fmt.Errorf("warehouse: profile of %s: %w", p.User, err)
		}
	}
	return nil
}

// withProfiles sets the users' profile fields from user_profiles.
func (s *Store) withProfiles(ctx context.Context, partnerID string, users []User) error {
	if len(users) == 0 {
		return nil
	}
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.ID
	}
	in, args := inList(ids)
	rows, err := s.db().QueryContext(ctx, `SELECT partner_customer_id, login, birth_year, sex, to_json(custom_tags)::VARCHAR
		FROM user_profiles WHERE partner_id = ? AND partner_customer_id IN (`+in+`)`, append([]any{partnerID}, args...)...)
	if err != nil {
		return fmt.Errorf("warehouse: user profiles: %w", err)
	}
	defer rows.Close()
	found := map[string]Profile{}
	for rows.Next() {
		var p Profile
		var login, sex, tags sql.NullString
		var year sql.NullInt64
		if err := rows.Scan(&p.User, &login, &year, &sex, &tags); err != nil {
			return fmt.Errorf("warehouse: user profiles: %w", err)
		}
		if login.Valid {
			p.Login = &login.String
		}
		if sex.Valid {
			p.Sex = &sex.String
		}
		if year.Valid {
			y := int(year.Int64)
			p.BirthYear = &y
		}
		if tags.Valid {
			if err := json.Unmarshal([]byte(tags.String), &p.CustomTags); err != nil {
				return fmt.Errorf("warehouse: user profiles: %w", err)
			}
		}
		found[p.User] = p
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("warehouse: user profiles: %w", err)
	}
	for i := range users {
		if p, ok := found[users[i].ID]; ok {
			users[i].Profile = p
		}
	}
	return nil
}
