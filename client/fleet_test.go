package client

import (
	"reflect"
	"testing"
)

func TestOneFamilyKeepsIPv4WhenANameHasBoth(t *testing.T) {
	for _, tt := range []struct{ in, want []string }{
		{[]string{"192.0.2.1", "2001:db8::1"}, []string{"192.0.2.1"}},
		{[]string{"2001:db8::1", "2001:db8::2"}, []string{"2001:db8::1", "2001:db8::2"}},
		{[]string{"192.0.2.1", "192.0.2.2", "2001:db8::1"}, []string{"192.0.2.1", "192.0.2.2"}},
		{[]string{"not-an-ip"}, nil},
	} {
		if got := oneFamily(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("oneFamily(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
