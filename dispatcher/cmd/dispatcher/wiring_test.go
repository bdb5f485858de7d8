package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/delivery"
	"github.com/imcloud/im-push-operator/dispatcher/server"
	"github.com/imcloud/im-push-operator/dispatcher/store"
)

func TestSubmitErrorsKeepTheirMeaning(t *testing.T) {
	other := errors.New("boom")
	cases := []struct {
		in   error
		want error
	}{
		{delivery.ErrQueueFull, server.ErrQueueFull},
		{delivery.ErrDraining, server.ErrDraining},
		{delivery.ErrNotReady, server.ErrNotReady},
		{fmt.Errorf("reading user bob: %w", store.ErrNotReady), server.ErrNotReady},
		{other, other},
	}
	for _, tc := range cases {
		got := submitError(tc.in)
		if !errors.Is(got, tc.want) || !errors.Is(got, tc.in) {
			t.Errorf("submitError(%v) = %v, want it to wrap %v and the original", tc.in, got, tc.want)
		}
	}
}

func TestConvertStatus(t *testing.T) {
	st := convertStatus(delivery.Status{ID: "n1", Done: false, Outcomes: []delivery.DeviceOutcome{
		{User: "bob", Device: "p", Certificate: "vivo", Provider: "Vivo", State: delivery.Pending, Attempts: 2, ProviderReason: "10054"},
		{User: "carol", State: delivery.Skipped, Reason: "Online"},
	}})
	if st.ID != "n1" || st.Complete || len(st.Devices) != 2 {
		t.Fatalf("status = %+v", st)
	}
	if d := st.Devices[0]; d.CertificateName != "vivo" || d.Provider != "Vivo" || d.State != server.StatePending || d.Attempts != 2 || d.ProviderReason != "10054" {
		t.Errorf("device 0 = %+v", d)
	}
	if d := st.Devices[1]; d.State != server.StateSkipped || d.Reason != "Online" {
		t.Errorf("device 1 = %+v", d)
	}
	if empty := convertStatus(delivery.Status{ID: "n2", Done: true}); empty.Devices == nil || !empty.Complete {
		t.Errorf("empty status = %+v", empty)
	}
}
