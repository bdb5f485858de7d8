package localrun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// API calls a dispatcher replica's HTTP API as an IM server would.
type API struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// Outcome is one device's line in a notification's status.
type Outcome struct {
	User            string `json:"user"`
	Device          string `json:"device"`
	CertificateName string `json:"certificateName"`
	Provider        string `json:"provider"`
	State           string `json:"state"`
	Reason          string `json:"reason"`
	Attempts        int    `json:"attempts"`
}

// Status is the answer of POST /v1/notifications?wait=true and of
// GET /v1/notifications/{id}.
type Status struct {
	ID       string    `json:"id"`
	Accepted int       `json:"accepted"`
	Complete bool      `json:"complete"`
	Devices  []Outcome `json:"devices"`
}

// Do sends a JSON request and decodes a JSON answer into out (when non-nil);
// a status other than want is an error carrying the body.
func (a *API) Do(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	req.Header.Set("Content-Type", "application/json")
	hc := a.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 40 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// Bind registers a device token.
func (a *API) Bind(ctx context.Context, user, device, certificateName, token string) error {
	return a.Do(ctx, http.MethodPut, "/v1/users/"+user+"/devices/"+device,
		map[string]string{"certificateName": certificateName, "token": token}, http.StatusNoContent, nil)
}

// Notify posts a notification and waits for its final outcomes.
func (a *API) Notify(ctx context.Context, n any) (*Status, error) {
	var st Status
	err := a.Do(ctx, http.MethodPost, "/v1/notifications?wait=true&timeout=20s", n, http.StatusOK, &st)
	return &st, err
}
