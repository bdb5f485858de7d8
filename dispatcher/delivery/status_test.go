package delivery

import (
	"strconv"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

func TestKeptOutcomeRoundTrips(t *testing.T) {
	for _, o := range []DeviceOutcome{
		{},
		{User: "u1", State: Skipped, Reason: ReasonInvalidUser},
		{User: "u1", Device: "d1", Certificate: "apns-prod", Provider: config.APNs, State: Pending},
		{User: "u2", Device: "d2", Certificate: "hw", Provider: config.Huawei, State: Failed, Reason: ReasonTokenInvalid, ProviderReason: "80300007", Attempts: 3},
	} {
		if got := compact(o).expand(); got != o {
			t.Errorf("compact(%+v).expand() = %+v", o, got)
		}
	}
}

func TestInternerOverflowsToAPlaceholder(t *testing.T) {
	in := newInterner(4)
	a, b := in.of("a"), in.of("b")
	if a == b || in.of("a") != a || in.name(a) != "a" || in.name(b) != "b" {
		t.Fatalf("tags a=%d b=%d name(a)=%q name(b)=%q", a, b, in.name(a), in.name(b))
	}
	for i := range 3 {
		if got := in.name(in.of("c" + strconv.Itoa(i))); got != overflowName {
			t.Errorf("a fifth distinct name is %q, want %q", got, overflowName)
		}
	}
	if in.name(in.of("b")) != "b" || in.name(in.of("")) != "" {
		t.Error("names interned before the table filled changed")
	}
}
