package policy

import (
	"errors"
	"fmt"
	"time"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// inQuietHours reports whether now falls in q's daily window, in q's zone.
// A window that does not parse counts as none: the operator and the API
// validate windows, and guessing one could silence a user all day.
func (r *Renderer) inQuietHours(q *config.QuietHours, now time.Time) bool {
	if q == nil {
		return false
	}
	start, err1 := parseClock(q.Start)
	end, err2 := parseClock(q.End)
	if err1 != nil || err2 != nil || start == end {
		return false
	}
	local := now.In(r.zones.get(q.TimeZone))
	t := local.Hour()*60 + local.Minute()
	if start < end {
		return start <= t && t < end
	}
	// end < start: the window crosses midnight.
	return t >= start || t < end
}

// parseClock reads "HH:MM" (00:00 to 23:59) into minutes after midnight.
func parseClock(s string) (int, error) {
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not HH:MM", s)
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("%q is not a time of day between 00:00 and 23:59", s)
	}
	return h*60 + m, nil
}

// ValidateQuietHours checks a quiet-hours window; path prefixes the field
// names in errors ("spec.quietHours" for a policy, "quietHours" for a
// user's settings). A nil window is valid.
func ValidateQuietHours(path string, q *config.QuietHours) error {
	return errors.Join(quietHoursErrors(path, q)...)
}

// quietHoursErrors lists one *FieldError per bad field, for ValidatePolicy
// to join with its own at one level.
func quietHoursErrors(path string, q *config.QuietHours) []error {
	if q == nil {
		return nil
	}
	var errs []error
	if _, err := parseClock(q.Start); err != nil {
		errs = append(errs, &FieldError{Path: path + ".start", Err: err})
	}
	if _, err := parseClock(q.End); err != nil {
		errs = append(errs, &FieldError{Path: path + ".end", Err: err})
	}
	switch q.TimeZone {
	case "", "UTC":
	case "Local":
		errs = append(errs, &FieldError{Path: path + ".timeZone", Err: errors.New(`"Local" is not an IANA time zone`)})
	default:
		if _, err := time.LoadLocation(q.TimeZone); err != nil {
			errs = append(errs, &FieldError{Path: path + ".timeZone", Err: err})
		}
	}
	return errs
}
