package bulktest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// token is the token endpoint: client_credentials with a private_key_jwt
// assertion or a client secret (basic or post).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.tokenReqs.Add(1)
	a := s.opts.Auth
	if a == nil {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "authorization is not enabled")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be form-encoded")
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	switch {
	case r.PostForm.Get("client_assertion") != "":
		if r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			oauthError(w, http.StatusBadRequest, "invalid_request", "wrong client_assertion_type")
			return
		}
		if err := s.checkAssertion(r.PostForm.Get("client_assertion"), base(r)+"/auth/token"); err != nil {
			oauthError(w, http.StatusUnauthorized, "invalid_client", err.Error())
			return
		}
	default:
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if a.ClientSecret == "" || id != a.ClientID || secret != a.ClientSecret {
			oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
			return
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	life := a.TokenLifetime
	if life <= 0 {
		life = 300 * time.Second
	}
	s.mu.Lock()
	s.tokens[tok] = &token{exp: s.opts.Now().Add(life)}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "bearer",
		"expires_in": int(life / time.Second), "scope": r.PostForm.Get("scope")})
}

// checkAssertion verifies a SMART Backend Services client assertion.
func (s *Server) checkAssertion(assertion, aud string) error {
	a := s.opts.Auth
	if a.JWKS == nil {
		return errors.New("no JWKS registered")
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(assertion, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if typ, _ := t.Header["typ"].(string); typ != "JWT" {
			return nil, errors.New("typ header must be JWT")
		}
		for _, k := range a.JWKS.Keys {
			if k.Kid == kid {
				return k.PublicKey()
			}
		}
		return nil, errors.New("no registered key with this kid")
	}, jwt.WithValidMethods([]string{"RS384", "ES384"}), jwt.WithAudience(aud), jwt.WithIssuer(a.ClientID),
		jwt.WithSubject(a.ClientID), jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.opts.Now))
	if err != nil {
		return errors.New("client assertion rejected")
	}
	exp, _ := claims.GetExpirationTime()
	if exp.Sub(s.opts.Now()) > 5*time.Minute+5*time.Second {
		return errors.New("client assertion exp more than five minutes ahead")
	}
	jti, _ := claims["jti"].(string)
	if jti == "" {
		return errors.New("client assertion without jti")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jtis[jti] {
		return errors.New("client assertion jti replayed")
	}
	s.jtis[jti] = true
	return nil
}
