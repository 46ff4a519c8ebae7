package harvest

import (
	"encoding/hex"
	"errors"
	"testing"
)

// The spec's "Signature Example".
const (
	specKey       = "c70b5dd9ebfb6f51d09d4132b7170c9d20750a7852f00680f65658f0310e810056e6763c34c9a00b0e940076f54495c169fc2302cceb312039271c43469507dc"
	specHash      = "29fc5883e2b98a85b9b3b67f545f22ea5b21a0a9c43e4f450648288d35108f966e356c29b6dd2453c48d1bb726fa9154252ebc8dae38df57717d1a8ade30630a"
	specSignature = "eef7055a0942e5d4692ef74de3482e777b54aad196ce49c5f01e707d041e0e9638d31a1582148458ca191bc1d3be04954cd29f8f62d3ee77485a06c998a564d6"
	specPayload   = "<AccountList><Accounts><Account><PartnerCustomerId>2358475</PartnerCustomerId></Account></Accounts></AccountList>"
	// The example request's body as it prints it, lines indented and
	// trailing blanks kept.
	specBody = `        
   <AccountList>        
     <Accounts>     
       <Account>        
         <PartnerCustomerId>2358475</PartnerCustomerId>     
       </Account>       
     </Accounts>        
   </AccountList>       
 `
	// derivedSignature is Sign(specPayload, specKey): the SHA-512 of the
	// payload is 63ce9254...e7b7422d (sha512sum agrees), not the hash the
	// example prints, so its signature is not the example's either.
	derivedSignature = "a4c5cf8d86a20613c1899ac34ece2572e06221363c2474de19dd2e54b9e7b863f36af1d24f14da613859241479a358e8dfc251d055deb9f876f58e9ca12245f1"
)

func TestSpecExampleXORStep(t *testing.T) {
	key, err := ParseKey(specKey)
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := hex.DecodeString(specHash)
	if got := hex.EncodeToString(xorHash(sum, key)); got != specSignature {
		t.Errorf("the example's hash XOR its key:\n got %s\nwant %s", got, specSignature)
	}
}

func TestSignAndVerify(t *testing.T) {
	key, _ := ParseKey(specKey)
	if got := string(Canonical([]byte(specBody))); got != specPayload {
		t.Errorf("canonical body:\n got %q\nwant %q", got, specPayload)
	}
	if got := Sign([]byte(specBody), key); got != derivedSignature {
		t.Errorf("signature of the example's payload:\n got %s\nwant %s", got, derivedSignature)
	}
	if err := Verify([]byte(specPayload), key, derivedSignature); err != nil {
		t.Errorf("verify: %v", err)
	}
	for name, sig := range map[string]string{
		"the example's (of another hash)": specSignature,
		"upper case, one digit changed":   "B" + derivedSignature[1:],
		"not hex":                         "zz",
		"short":                           derivedSignature[:64],
	} {
		if err := Verify([]byte(specPayload), key, sig); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v, want ErrSignature", name, err)
		}
	}
	// A changed body fails; whitespace at line ends and between lines does not count.
	if err := Verify([]byte(specPayload[:len(specPayload)-1]+" >"), key, derivedSignature); !errors.Is(err, ErrSignature) {
		t.Errorf("changed body verified: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	for _, bad := range []string{"", "abc", specKey[:126], specKey + "00", "zz" + specKey[2:]} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}
