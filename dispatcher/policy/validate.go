package policy

import (
	"errors"
	"fmt"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// FieldError is a validation error about one field of a PushPolicy. Path
// uses spec JSON names, with templates[i] indexing config.Policy.Templates
// (spec.notification.templates[1].body); a controller whose spec keeps the
// default template and translations apart maps the index back to its own
// field before reporting.
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// validationSamples are rendered by every template in ValidatePolicy. Field
// errors in text/template only show when executed, so the samples between
// them take both sides of the branches templates usually have: group and
// single, mentioned and not, names present and absent.
var validationSamples = []TemplateData{
	{
		Sender:       Sender{ID: "u1", DisplayName: "Alice"},
		Conversation: Conversation{ID: "g1", Type: ConversationGroup, Name: "Team"},
		Text:         "hello",
		Mentioned:    true,
		MentionAll:   true,
		Recipient:    "u2",
	},
	{
		Sender:       Sender{ID: "u1"},
		Conversation: Conversation{ID: "c1", Type: ConversationSingle},
		Recipient:    "u2",
	},
}

// ValidatePolicy checks what the dispatcher would otherwise only find out
// per notification: every template parses and renders on sample
// notifications, languages are not repeated, the enums are known, and the
// quiet hours parse and name a loadable time zone. All problems are
// returned together, each a *FieldError.
func ValidatePolicy(p *config.Policy) error {
	var errs []error
	switch p.MultiDevice {
	case "", AllOffline, AnyOffline:
	default:
		errs = append(errs, &FieldError{Path: "spec.multiDevice", Err: fmt.Errorf("%q is not AllOffline or AnyOffline", p.MultiDevice)})
	}
	switch p.ProviderPreference {
	case "", VendorFirst, FCMFirst:
	default:
		errs = append(errs, &FieldError{Path: "spec.providerPreference", Err: fmt.Errorf("%q is not VendorFirst or FCMFirst", p.ProviderPreference)})
	}
	seen := map[string]int{}
	for i, t := range p.Templates {
		path := fmt.Sprintf("spec.notification.templates[%d]", i)
		lang := normLanguage(t.Language)
		if j, dup := seen[lang]; dup {
			errs = append(errs, &FieldError{Path: path + ".language", Err: fmt.Errorf("language %s is already used by templates[%d]", quoteLanguage(t.Language), j)})
		} else {
			seen[lang] = i
		}
		errs = append(errs, validateTemplate(path+".title", templateName("title", t.Language), t.Title))
		errs = append(errs, validateTemplate(path+".body", templateName("body", t.Language), t.Body))
	}
	errs = append(errs, validateTemplate("spec.notification.hiddenTitle", "hiddenTitle", p.HiddenTitle))
	errs = append(errs, validateTemplate("spec.notification.hiddenBody", "hiddenBody", p.HiddenBody))
	errs = append(errs, quietHoursErrors("spec.quietHours", p.QuietHours)...)
	return errors.Join(errs...)
}

func validateTemplate(path, name, src string) error {
	t, err := parseTemplate(name, src)
	if err != nil {
		return &FieldError{Path: path, Err: err}
	}
	if t == nil {
		return nil
	}
	for i := range validationSamples {
		if _, err := execute(t, &validationSamples[i]); err != nil {
			return &FieldError{Path: path, Err: err}
		}
	}
	return nil
}
