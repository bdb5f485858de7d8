package fake_test

import (
	"errors"
	"math"
	"net/http"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/imcloud/im-push-operator/dispatcher/providers"
	"github.com/imcloud/im-push-operator/dispatcher/providers/fake"
)

// startEcho serves a fake whose protocol answers 200 to every token after
// the usual Next and Pause, as the provider fakes do.
func startEcho(t *testing.T) (*fake.Server, *http.Client) {
	t.Helper()
	ca, err := fake.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	state := fake.NewState("echo")
	srv, err := fake.Start(ca, state, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.URL.Query().Get("token")
		a := state.Next(token)
		state.Pause(r, a)
		state.Record(fake.Received{Token: token, Answered: a.Code})
		w.WriteHeader(http.StatusOK)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	// The providers' own client: HTTP/2 through golang.org/x/net/http2.
	hc, err := providers.NewHTTPClient(string(ca.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	return srv, hc
}

func send(hc *http.Client, srv *fake.Server, token string) error {
	resp, err := hc.Get(srv.URL + "/send?token=" + token)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		return errors.New("not HTTP/2: " + resp.Proto)
	}
	return nil
}

// TestConnectionFaults checks the two connection faults every fake shares:
// GoAway reaches an HTTP/2 client as a GOAWAY admitting every stream, so the
// transport does not retry the send on its own; ConnReset as a reset
// connection. Either way the send is not recorded, the next one succeeds on
// a new connection, and the fake counts its connections until all close.
func TestConnectionFaults(t *testing.T) {
	srv, hc := startEcho(t)
	state := srv.State
	if err := send(hc, srv, "warm"); err != nil {
		t.Fatal(err)
	}

	state.Script("a", fake.Answer{Code: fake.GoAway, Times: 1})
	err := send(hc, srv, "a")
	var ga http2.GoAwayError
	if !errors.As(err, &ga) || ga.LastStreamID != math.MaxInt32 || ga.ErrCode != http2.ErrCodeNo {
		t.Fatalf("send after GoAway: %v (%T), want a GOAWAY admitting every stream", err, err)
	}
	if err := send(hc, srv, "a"); err != nil {
		t.Fatalf("send after the GOAWAY: %v", err)
	}

	state.Script("b", fake.Answer{Code: fake.ConnReset, Times: 1})
	if err := send(hc, srv, "b"); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("send after ConnReset: %v (%T), want a connection reset", err, err)
	}
	if err := send(hc, srv, "b"); err != nil {
		t.Fatalf("send after the reset: %v", err)
	}

	got := map[string]int{}
	for _, r := range state.Received() {
		got[r.Token]++
	}
	if got["a"] != 1 || got["b"] != 1 || len(state.Received()) != 3 {
		t.Errorf("recorded %v, want one send each of warm, a and b", got)
	}
	if opened, _ := state.Connections(); opened != 3 {
		t.Errorf("%d connections opened, want 3 (one per fault plus the first)", opened)
	}
	hc.CloseIdleConnections()
	if open := state.WaitClosed(10 * time.Second); open != 0 {
		t.Errorf("%d connections still open after the client closed its idle ones", open)
	}
}
