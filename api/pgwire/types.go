package pgwire

import "github.com/jackc/pgx/v5/pgtype"

// textTimestamptz writes timestamptz in text format as Postgres does,
// "2016-07-07 00:00:00+00", where pgtype writes "...Z": clients reading
// text (psycopg2, JDBC's text mode) misread the Z. Binary is pgtype's.
type textTimestamptz struct{ pgtype.TimestamptzCodec }

func (c *textTimestamptz) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if _, ok := value.(pgtype.TimestamptzValuer); ok && format == pgtype.TextFormatCode {
		return postgresTimestamptz{}
	}
	return c.TimestamptzCodec.PlanEncode(m, oid, format, value)
}

type postgresTimestamptz struct{}

func (postgresTimestamptz) Encode(value any, buf []byte) ([]byte, error) {
	ts, err := value.(pgtype.TimestamptzValuer).TimestamptzValue()
	if err != nil || !ts.Valid {
		return nil, err
	}
	switch ts.InfinityModifier {
	case pgtype.Infinity:
		return append(buf, "infinity"...), nil
	case pgtype.NegativeInfinity:
		return append(buf, "-infinity"...), nil
	}
	return append(ts.Time.UTC().AppendFormat(buf, "2006-01-02 15:04:05.999999"), "+00"...), nil
}

// postgresTypes are the encodings the endpoint changes from pgtype's.
func postgresTypes(m *pgtype.Map) {
	m.RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID, Codec: &textTimestamptz{}})
}
