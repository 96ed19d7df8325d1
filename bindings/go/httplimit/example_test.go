package httplimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	sluice "sluice.dev/go"
	"sluice.dev/go/httplimit"
)

// A login endpoint behind a load balancer at 10.0.0.0/8: the client's address comes from
// X-Forwarded-For, each wrong password is a failure, and the fifth locks the client out.
func Example() {
	limiter, err := sluice.Open(sluice.DefaultPolicy, "")
	if err != nil {
		panic(err)
	}
	defer limiter.Close()
	auth, err := httplimit.New(limiter, "auth", httplimit.TrustProxies("10.0.0.0/8"))
	if err != nil {
		panic(err)
	}
	login := auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") == "correct horse" {
			auth.Success(r)
			fmt.Fprintln(w, "welcome")
			return
		}
		if d, err := auth.Failure(r); err == nil && !d.Allowed {
			auth.Refuse(w, r, d) // this failure locked the client out
			return
		}
		http.Error(w, "wrong password", http.StatusUnauthorized)
	}))

	for i := 0; i < 6; i++ {
		r := httptest.NewRequest("POST", "/login?password=guess", nil)
		r.RemoteAddr = "10.0.0.2:51000"                 // the load balancer
		r.Header.Set("X-Forwarded-For", "198.51.100.7") // the client it saw
		w := httptest.NewRecorder()
		login.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Get("Retry-After") != "")
	}
	// Output:
	// 401 false
	// 401 false
	// 401 false
	// 401 false
	// 429 true
	// 429 true
}
