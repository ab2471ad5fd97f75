// The sign-in form: log in, or sign up with a user name.

import { api } from "./api.js";
import { $ } from "./view.js";

// signedIn({ token, user }) runs once the server said yes.
export function onSignIn(signedIn) {
  $("auth-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const signup = event.submitter?.value === "signup";
    const name = $("auth-user-name").value.trim();
    const email = $("auth-email").value.trim();
    const password = $("auth-password").value;
    const error = $("auth-error");
    if (signup && !name) return void (error.textContent = "Choose a user name to sign up.");
    if (!email || !password) return void (error.textContent = "Enter your email and password.");
    const buttons = event.currentTarget.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    error.textContent = signup ? "Signing up…" : "Logging in…";
    try {
      const data = signup
        ? await api.signup(name, email, password)
        : await api.login(email, password);
      $("auth-password").value = "";
      error.textContent = "";
      signedIn({ token: data.token, user: data.user });
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
}
