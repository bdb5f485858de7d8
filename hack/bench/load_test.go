package main

import (
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
)

// TestNotificationBody checks the hand-built body against the request the
// API documents, decoded by the standard library.
func TestNotificationBody(t *testing.T) {
	var body struct {
		ID     string `json:"id"`
		Sender struct {
			ID string `json:"id"`
		} `json:"sender"`
		Conversation struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"conversation"`
		Recipients []struct {
			UserID string `json:"userId"`
		} `json:"recipients"`
		Message struct {
			Text string `json:"text"`
		} `json:"message"`
		Push struct {
			Data map[string]string `json:"data"`
		} `json:"push"`
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for _, c := range []struct {
		recipients, first int
		wantType          string
		wantUsers         []string
	}{
		{1, 7, "single", []string{"u-00007"}},
		{3, 19998, "group", []string{"u-19998", "u-19999", "u-00000"}},
		{2, 12345, "group", []string{"u-12345", "u-12346"}},
	} {
		b, stamp := notificationBody(loadJob{UserPrefix: "u-", Users: 20000, Recipients: c.recipients}, c.first)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !uuid.MatchString(body.ID) || seen[body.ID] {
			t.Errorf("id %q: want a fresh version 4 UUID", body.ID)
		}
		seen[body.ID] = true
		if body.Sender.ID == "" || body.Message.Text == "" || body.Conversation.Type != c.wantType {
			t.Errorf("%s: want a sender, a text and conversation type %s", b, c.wantType)
		}
		var users []string
		for _, r := range body.Recipients {
			users = append(users, r.UserID)
		}
		if len(users) != len(c.wantUsers) {
			t.Fatalf("recipients %v, want %v", users, c.wantUsers)
		}
		for i := range users {
			if users[i] != c.wantUsers[i] {
				t.Errorf("recipients %v, want %v", users, c.wantUsers)
			}
		}
		if got := body.Push.Data[sentAtKey]; got != strconv.FormatInt(stamp, 10) {
			t.Errorf("%s = %q, want the returned stamp %d", sentAtKey, got, stamp)
		}
	}
}
