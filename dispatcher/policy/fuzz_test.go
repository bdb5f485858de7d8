package policy

import (
	"testing"
	"unicode/utf8"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// FuzzRender keeps the templates fixed, as a loaded policy does, and varies
// everything the IM server sends: whatever arrives, rendering must not panic
// or fail, and must stay valid UTF-8 within MaxTextBytes.
func FuzzRender(f *testing.F) {
	f.Add("hi", "alice", "Alice", "g1", "group", "Team", "zh-Hant-TW", "", "", true)
	f.Add("", "", "", "", "", "", "", "", "", false)
	f.Add("\xff\xfe", "a\x00b", "{{.Text}}", "c", "single", "", "ZH_cn", "override", "body", true)
	f.Add(string(make([]byte, 5000)), "x", "日本語", "c", "group", "名前", "en", "", "", false)

	show := testPolicy()
	show.Templates = []config.Template{
		{Title: "{{.Sender.DisplayName}}{{if .Mentioned}} @you{{end}}", Body: "{{.Text}}{{.Text}}{{.Text}}"},
		{Language: "zh", Title: "{{.Conversation.Name}} {{.Sender.ID}}", Body: "{{.Sender.DisplayName}}: {{.Text}}"},
		{Language: "zh-Hant", Body: "{{printf \"%q\" .Text}}"},
	}
	hidden := show
	hidden.ShowContent = false
	hidden.HiddenTitle = "{{.Sender.DisplayName}}{{.Conversation.Name}}"
	var renderers []*Renderer
	for _, p := range []config.Policy{show, hidden} {
		r, err := NewRenderer(&p)
		if err != nil {
			f.Fatal(err)
		}
		renderers = append(renderers, r)
	}

	f.Fuzz(func(t *testing.T, text, senderID, senderName, convID, convType, convName, language, pushTitle, pushBody string, mentionAll bool) {
		n := &Notification{
			ID:           "n",
			Sender:       Sender{ID: senderID, DisplayName: senderName},
			Conversation: Conversation{ID: convID, Type: convType, Name: convName},
			Message:      Message{Text: text, MentionAll: mentionAll, Mentions: []string{senderID}},
		}
		if pushTitle != "" || pushBody != "" {
			n.Push = &Push{Title: pushTitle, Body: pushBody}
		}
		for _, r := range renderers {
			got := r.Render(n, senderID, language)
			if len(got.Errors) != 0 {
				t.Fatalf("render errors: %v", got.Errors)
			}
			for _, s := range []string{got.Title, got.Body} {
				if len(s) > MaxTextBytes || !utf8.ValidString(s) {
					t.Fatalf("output of %d bytes, valid UTF-8 %v", len(s), utf8.ValidString(s))
				}
			}
		}
	})
}
