package harvest

import (
	"bytes"
	"testing"
)

// FuzzReadEnvelope: whatever a partner's endpoint sends, reading it ends in
// an envelope or an error, never a panic; an envelope's inner body, signed
// and read again, is the same bytes and verifies.
func FuzzReadEnvelope(f *testing.F) {
	key, _ := ParseKey(specKey)
	f.Add(Response(2, []byte("\n<Users>\n  <User><PartnerCustomerId>1</PartnerCustomerId></User>\n</Users>\n"), key))
	f.Add([]byte(`<?xml version="1.0"?><PartnerResponse signature="00" request_id="7"><Accounts/></PartnerResponse>`))
	f.Add([]byte(`<PartnerResponse request_id="x"><a><b></a></b></PartnerResponse>`))
	f.Add([]byte(`<!DOCTYPE d [<!ENTITY e "x">]><PartnerResponse>&e;</PartnerResponse>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		env, err := ReadEnvelope(bytes.NewReader(doc), 1<<20)
		if err != nil {
			return
		}
		again, err := ReadEnvelope(bytes.NewReader(Response(env.ID, env.Inner, key)), 1<<21)
		if err != nil {
			t.Fatalf("a read body signed again does not read: %v", err)
		}
		if !bytes.Equal(again.Inner, env.Inner) {
			t.Fatalf("inner body changed: %q -> %q", env.Inner, again.Inner)
		}
		if err := again.CheckResponse(env.ID, key); err != nil {
			t.Fatalf("a body signed with the key does not verify: %v", err)
		}
	})
}
