package policy

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

func TestRender(t *testing.T) {
	langs := []config.Template{
		{Title: "{{.Sender.DisplayName}}", Body: "default: {{.Text}}"},
		{Language: "zh", Title: "{{.Sender.DisplayName}}", Body: "zh: {{.Text}}"},
		{Language: "zh-Hant", Title: "{{.Sender.DisplayName}}", Body: "zh-Hant: {{.Text}}"},
		{Language: "en-US", Title: "{{.Sender.DisplayName}}", Body: "en-US: {{.Text}}"},
	}
	noDefault := []config.Template{{Language: "zh", Body: "zh: {{.Text}}"}}
	group := func(n *Notification) {
		n.Conversation = Conversation{ID: "g1", Type: ConversationGroup, Name: "Team"}
	}

	tests := []struct {
		name      string
		policy    func(*config.Policy)
		notif     func(*Notification)
		language  string
		wantTitle string
		wantBody  string
		wantErrs  int
	}{
		// Built-in defaults.
		{name: "default: single chat", wantTitle: "Alice", wantBody: "hi"},
		{name: "default: sender without display name", notif: func(n *Notification) { n.Sender.DisplayName = "" }, wantTitle: "alice", wantBody: "hi"},
		{name: "default: named group", notif: group, wantTitle: "Team", wantBody: "Alice: hi"},
		{name: "default: named group, no text", notif: func(n *Notification) { group(n); n.Message.Text = "" }, wantTitle: "Team", wantBody: ""},
		{name: "default: unnamed group", notif: func(n *Notification) { group(n); n.Conversation.Name = "" }, wantTitle: "Alice", wantBody: "hi"},

		// Language choice.
		{name: "language: none set uses the default", policy: func(p *config.Policy) { p.Templates = langs }, wantTitle: "Alice", wantBody: "default: hi"},
		{name: "language: exact", policy: func(p *config.Policy) { p.Templates = langs }, language: "en-US", wantTitle: "Alice", wantBody: "en-US: hi"},
		{name: "language: exact, other case and underscore", policy: func(p *config.Policy) { p.Templates = langs }, language: "EN_us", wantTitle: "Alice", wantBody: "en-US: hi"},
		{name: "language: base", policy: func(p *config.Policy) { p.Templates = langs }, language: "zh-Hans-CN", wantTitle: "Alice", wantBody: "zh: hi"},
		{name: "language: longest prefix", policy: func(p *config.Policy) { p.Templates = langs }, language: "zh-Hant-TW", wantTitle: "Alice", wantBody: "zh-Hant: hi"},
		{name: "language: a longer template does not match a shorter tag", policy: func(p *config.Policy) { p.Templates = langs }, language: "en", wantTitle: "Alice", wantBody: "default: hi"},
		{name: "language: unknown falls back to the default", policy: func(p *config.Policy) { p.Templates = langs }, language: "fr-FR", wantTitle: "Alice", wantBody: "default: hi"},
		{name: "language: no default template falls back to built-in", policy: func(p *config.Policy) { p.Templates = noDefault }, language: "fr", wantTitle: "Alice", wantBody: "hi"},
		{name: "language: empty field uses the built-in default", policy: func(p *config.Policy) { p.Templates = noDefault }, language: "zh", wantTitle: "Alice", wantBody: "zh: hi"},
		{name: "language: first of duplicates wins", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Language: "zh", Body: "first"}, {Language: "ZH", Body: "second"}}
		}, language: "zh", wantTitle: "Alice", wantBody: "first"},

		// Template data.
		{name: "data: every field", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{
				Title: "{{.Conversation.Name}}/{{.Conversation.Type}}/{{.Conversation.ID}}",
				Body:  "{{.Sender.ID}} {{.Recipient}} m={{.Mentioned}} all={{.MentionAll}} {{.Text}}",
			}}
		}, notif: func(n *Notification) { group(n); n.Message.Mentions = []string{"bob"} },
			wantTitle: "Team/group/g1", wantBody: "alice bob m=true all=false hi"},
		{name: "data: mentionAll means mentioned", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Body: "{{if .Mentioned}}[@] {{end}}{{.Text}}"}}
		}, notif: func(n *Notification) { n.Message.MentionAll = true }, wantTitle: "Alice", wantBody: "[@] hi"},
		{name: "data: another user mentioned", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Body: "{{if .Mentioned}}[@] {{end}}{{.Text}}"}}
		}, notif: func(n *Notification) { n.Message.Mentions = []string{"carol"} }, wantTitle: "Alice", wantBody: "hi"},
		{name: "data: no HTML escaping", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Body: "{{.Text}}"}}
		}, notif: func(n *Notification) { n.Message.Text = "<b>&'" }, wantTitle: "Alice", wantBody: "<b>&'"},

		// Hidden content.
		{name: "hidden: templates", policy: func(p *config.Policy) {
			p.ShowContent = false
			p.Templates = langs
			p.HiddenTitle = "{{.Sender.DisplayName}}"
			p.HiddenBody = "sent you a message"
		}, language: "zh", wantTitle: "Alice", wantBody: "sent you a message"},
		{name: "hidden: built-in defaults", policy: func(p *config.Policy) { p.ShowContent = false },
			notif: group, wantTitle: DefaultHiddenTitle, wantBody: DefaultHiddenBody},
		{name: "hidden: push overrides still win", policy: func(p *config.Policy) { p.ShowContent = false; p.HiddenBody = "secret" },
			notif: func(n *Notification) { n.Push = &Push{Title: "Call", Body: "Alice is calling"} }, wantTitle: "Call", wantBody: "Alice is calling"},

		// Overrides.
		{name: "override: title only", policy: func(p *config.Policy) { p.Templates = langs },
			notif: func(n *Notification) { n.Push = &Push{Title: "T"} }, wantTitle: "T", wantBody: "default: hi"},
		{name: "override: body only", policy: func(p *config.Policy) { p.Templates = langs },
			notif: func(n *Notification) { n.Push = &Push{Body: "B"} }, wantTitle: "Alice", wantBody: "B"},

		// Execution errors fall back per field.
		{name: "error: unknown field in the title", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Title: "{{.Sender.Nickname}}", Body: "{{.Text}}!"}}
		}, wantTitle: "Alice", wantBody: "hi!", wantErrs: 1},
		{name: "error: both fields", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Title: "{{.Nope}}", Body: `{{index .Text 99}}`}}
		}, wantTitle: "Alice", wantBody: "hi", wantErrs: 2},
		{name: "error: hidden template falls back to hidden default", policy: func(p *config.Policy) {
			p.ShowContent = false
			p.HiddenBody = "{{.Secret}}"
		}, wantTitle: DefaultHiddenTitle, wantBody: DefaultHiddenBody, wantErrs: 1},
		{name: "error: an override skips the broken template", policy: func(p *config.Policy) {
			p.Templates = []config.Template{{Title: "{{.Nope}}"}}
		}, notif: func(n *Notification) { n.Push = &Push{Title: "T"} }, wantTitle: "T", wantBody: "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			n := testNotification()
			if tt.notif != nil {
				tt.notif(n)
			}
			r := newRenderer(t, &p)
			got := r.Render(n, "bob", tt.language)
			if got.Title != tt.wantTitle || got.Body != tt.wantBody {
				t.Errorf("got title %q body %q, want %q %q", got.Title, got.Body, tt.wantTitle, tt.wantBody)
			}
			if len(got.Errors) != tt.wantErrs {
				t.Errorf("errors = %v, want %d", got.Errors, tt.wantErrs)
			}
		})
	}
}

func TestRenderBounds(t *testing.T) {
	long := strings.Repeat("é", 3000) // 2 bytes each
	tests := []struct {
		name     string
		template string
		text     string
		override string
	}{
		{name: "built-in default, long text", text: long},
		{name: "template, long text", template: "{{.Text}}", text: long},
		{name: "template output runs away", template: "{{range 1000000000}}日本{{end}}"},
		{name: "template repeats the text", template: "{{.Text}}{{.Text}}{{.Text}}", text: strings.Repeat("ab", 400)},
		{name: "invalid UTF-8 grows when replaced", text: strings.Repeat("\xff a", 1000)},
		{name: "long override", override: long + "x"},
		{name: "4-byte runes at the cut", text: strings.Repeat("𝄞", 1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			if tt.template != "" {
				p.Templates = []config.Template{{Body: tt.template}}
			}
			r := newRenderer(t, &p)
			n := testNotification()
			n.Message.Text = tt.text
			if tt.override != "" {
				n.Push = &Push{Body: tt.override}
			}
			got := r.Render(n, "bob", "")
			if len(got.Errors) != 0 {
				t.Fatalf("errors: %v", got.Errors)
			}
			if len(got.Body) > MaxTextBytes || !utf8.ValidString(got.Body) {
				t.Errorf("body is %d bytes, valid UTF-8 %v", len(got.Body), utf8.ValidString(got.Body))
			}
			if len(got.Body) < MaxTextBytes-utf8.UTFMax || !strings.HasSuffix(got.Body, "…") {
				t.Errorf("body of %d bytes was not cut close to the limit with an ellipsis: ...%q", len(got.Body), got.Body[max(0, len(got.Body)-12):])
			}
		})
	}
}

func TestRenderShortTextUntouched(t *testing.T) {
	p := testPolicy()
	r := newRenderer(t, &p)
	n := testNotification()
	n.Message.Text = strings.Repeat("a", MaxTextBytes)
	if got := r.Render(n, "bob", "").Body; got != n.Message.Text {
		t.Errorf("text of exactly MaxTextBytes changed to %d bytes", len(got))
	}
}

func TestNewRendererErrors(t *testing.T) {
	tests := []struct {
		name   string
		policy config.Policy
		want   []string
	}{
		{name: "language and field named", policy: config.Policy{Templates: []config.Template{
			{Title: "ok"},
			{Language: "zh", Title: "ok", Body: "{{.Text"},
		}}, want: []string{`language "zh"`, "field body"}},
		{name: "default language named", policy: config.Policy{Templates: []config.Template{{Title: "{{end}}"}}},
			want: []string{`language "" (default)`, "field title"}},
		{name: "hidden templates", policy: config.Policy{HiddenTitle: "{{", HiddenBody: "{{if}}"},
			want: []string{"hiddenTitle", "hiddenBody"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRenderer(&tt.policy)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewRendererCopiesPolicy(t *testing.T) {
	p := testPolicy()
	p.QuietHours = &config.QuietHours{Start: "11:00", End: "13:00"}
	p.Templates = []config.Template{{Body: "before"}}
	r := newRenderer(t, &p)
	p.QuietHours.Start = "13:00"
	p.Templates[0].Body = "after"
	p.ShowContent = false
	if !r.inQuietHours(r.Policy().QuietHours, noon) || r.Policy().Templates[0].Body != "before" || !r.Policy().ShowContent {
		t.Error("changing the policy after NewRenderer changed the Renderer")
	}
}

// A plain template (text and fields) is written without text/template's
// execution; the result must be what text/template writes, for every field
// of TemplateData, and any other template must still go to text/template.
func TestPlainTemplatesRenderAsTextTemplate(t *testing.T) {
	data := &TemplateData{
		Sender:       Sender{ID: "alice", DisplayName: "Alice <&> \"A\""},
		Conversation: Conversation{ID: "g1", Type: ConversationGroup, Name: "Team ✓"},
		Text:         "hi {{.Text}} \xff",
		Mentioned:    true,
		Recipient:    "bob",
	}
	// Every exported field path of TemplateData, found by reflection so a
	// field added later is covered.
	var fields []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Type.Kind() == reflect.Struct {
				walk(prefix+"."+f.Name, f.Type)
				continue
			}
			fields = append(fields, prefix+"."+f.Name)
		}
	}
	walk("", reflect.TypeFor[TemplateData]())
	if len(fields) < 9 {
		t.Fatalf("found only %d fields: %v", len(fields), fields)
	}
	var plain []string
	for _, f := range fields {
		plain = append(plain, "{{"+f+"}}", "a {{"+f+"}} b", "{{- "+f+" -}}  c", "{{"+f+"}}{{"+f+"}}")
	}
	plain = append(plain, "just text", "{{/* a comment */}}text", strings.Repeat("{{.Text}}", 400))
	other := []string{"{{.}}", "{{.Sender}}", "{{if .Mentioned}}@{{end}}", "{{printf \"%s!\" .Text}}", "{{.Text | len}}",
		"{{$x := .Text}}{{$x}}", "{{range $i, $c := .Text}}{{end}}", "{{.Nope}}", "{{.Sender.Nope}}", "{{with .Sender}}{{.ID}}{{end}}"}
	check := func(src string, wantPlain bool) {
		t.Helper()
		tt, err := parseTemplate("t", src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if (tt.parts != nil) != wantPlain {
			t.Errorf("%q: plain %v, want %v", src, tt.parts != nil, wantPlain)
		}
		got, gotErr := execute(tt, data)
		want, wantErr := execute(&textTemplate{t: tt.t}, data)
		if got != want || (gotErr == nil) != (wantErr == nil) {
			t.Errorf("%q:\n got %q, %v\nwant %q, %v", src, got, gotErr, want, wantErr)
		}
	}
	for _, src := range plain {
		check(src, true)
	}
	for _, src := range other {
		check(src, false)
	}
}
