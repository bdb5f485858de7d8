package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

func TestValidatePolicy(t *testing.T) {
	tests := []struct {
		name   string
		policy func(*config.Policy)
		// want maps each failing field path to a fragment of its message.
		want map[string]string
	}{
		{name: "valid", policy: func(p *config.Policy) {
			p.Templates = []config.Template{
				{Title: "{{.Sender.DisplayName}}", Body: "{{if .Mentioned}}[@]{{end}}{{.Text}}"},
				{Language: "zh-Hant", Title: "{{.Conversation.Name}}", Body: "{{.Recipient}} {{.MentionAll}} {{.Conversation.Type}} {{.Conversation.ID}} {{.Sender.ID}}"},
			}
			p.HiddenTitle = "New message"
			p.QuietHours = &config.QuietHours{Start: "22:00", End: "07:00", TimeZone: "Asia/Shanghai"}
		}},
		{name: "empty policy is valid"},
		{name: "start == end and UTC", policy: func(p *config.Policy) {
			p.QuietHours = &config.QuietHours{Start: "00:00", End: "00:00", TimeZone: "UTC"}
		}},
		{name: "parse error", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Title: "ok"}, {Language: "zh", Body: "{{.Text"}}
		}, want: map[string]string{"spec.notification.templates[1].body": "unclosed action"}},
		{name: "unknown field", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Title: "{{.Sender.Nickname}}"}}
		}, want: map[string]string{"spec.notification.templates[0].title": "Nickname"}},
		{name: "unknown field only when mentioned", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Body: "{{if .Mentioned}}{{.At}}{{end}}"}}
		}, want: map[string]string{"spec.notification.templates[0].body": "At"}},
		{name: "unknown field only in single chats", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Body: `{{if eq .Conversation.Type "single"}}{{.Peer}}{{end}}`}}
		}, want: map[string]string{"spec.notification.templates[0].body": "Peer"}},
		{name: "unknown field only without a display name", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Title: `{{with .Sender.DisplayName}}{{.}}{{else}}{{.Sender.Login}}{{end}}`}}
		}, want: map[string]string{"spec.notification.templates[0].title": "Login"}},
		{name: "duplicate language", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Language: "zh"}, {Language: "en"}, {Language: "ZH"}}
		}, want: map[string]string{"spec.notification.templates[2].language": "templates[0]"}},
		{name: "two defaults", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{}, {}}
		}, want: map[string]string{"spec.notification.templates[1].language": `"" (default)`}},
		{name: "hidden templates", policy: func(p *config.Policy) {
			p.HiddenTitle = "{{.Nope}}"
			p.HiddenBody = "{{"
		}, want: map[string]string{"spec.notification.hiddenTitle": "Nope", "spec.notification.hiddenBody": "unclosed action"}},
		{name: "quiet hours", policy: func(p *config.Policy) {
			p.QuietHours = &config.QuietHours{Start: "24:00", End: "7:00", TimeZone: "Nowhere/City"}
		}, want: map[string]string{
			"spec.quietHours.start":    "24:00",
			"spec.quietHours.end":      "7:00",
			"spec.quietHours.timeZone": "Nowhere/City",
		}},
		{name: "minutes out of range", policy: func(p *config.Policy) {
			p.QuietHours = &config.QuietHours{Start: "22:60", End: "07:00"}
		}, want: map[string]string{"spec.quietHours.start": "22:60"}},
		{name: "Local zone", policy: func(p *config.Policy) {
			p.QuietHours = &config.QuietHours{Start: "22:00", End: "07:00", TimeZone: "Local"}
		}, want: map[string]string{"spec.quietHours.timeZone": "Local"}},
		{name: "enums", policy: func(p *config.Policy) {
			p.MultiDevice = "Sometimes"
			p.ProviderPreference = "Random"
		}, want: map[string]string{"spec.multiDevice": "Sometimes", "spec.providerPreference": "Random"}},
		{name: "every problem reported together", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Title: "{{.X}}", Body: "{{.Y}}"}}
			p.QuietHours = &config.QuietHours{Start: "x", End: "07:00"}
		}, want: map[string]string{
			"spec.notification.templates[0].title": "X",
			"spec.notification.templates[0].body":  "Y",
			"spec.quietHours.start":                "x",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p config.Policy
			if tt.policy != nil {
				tt.policy(&p)
			}
			err := ValidatePolicy(&p)
			got := map[string]string{}
			for _, e := range unjoin(err) {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %v is not a *FieldError", e)
				}
				if !strings.HasPrefix(e.Error(), fe.Path+": ") {
					t.Errorf("error %q does not start with its path", e)
				}
				got[fe.Path] = e.Error()
			}
			paths := func(m map[string]string) []string {
				var out []string
				for k := range m {
					out = append(out, k)
				}
				return out
			}
			if diff := cmp.Diff(paths(tt.want), paths(got), cmpSorted); diff != "" {
				t.Fatalf("paths (-want +got):\n%s\nerror: %v", diff, err)
			}
			for path, frag := range tt.want {
				if !strings.Contains(got[path], frag) {
					t.Errorf("%s: %q does not mention %q", path, got[path], frag)
				}
			}
			// A policy ValidatePolicy accepts must compile.
			if err == nil {
				if _, err := NewRenderer(&p); err != nil {
					t.Errorf("NewRenderer rejects a valid policy: %v", err)
				}
			}
		})
	}
}

var cmpSorted = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestValidateQuietHoursUserPath(t *testing.T) {
	err := ValidateQuietHours("quietHours", &config.QuietHours{Start: "07:00", End: "25:00"})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "quietHours.end" {
		t.Errorf("got %v", err)
	}
	if err := ValidateQuietHours("quietHours", nil); err != nil {
		t.Errorf("nil window: %v", err)
	}
}
