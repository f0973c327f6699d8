// Progressive enhancement for the admin pages; every page works without this file.
// - <button data-copy="#id"> copies the text of the element #id (or data-copy-text) to the clipboard.
// - <form data-confirm="message"> asks before submitting (the server still requires its own confirmation).
document.addEventListener('click', async (event) => {
  const button = event.target instanceof Element ? event.target.closest('[data-copy], [data-copy-text]') : null;
  if (!button) return;
  event.preventDefault();
  const source = button.getAttribute('data-copy');
  const text = button.getAttribute('data-copy-text') ?? (source ? document.querySelector(source)?.textContent ?? '' : '');
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text.trim());
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Select and copy';
  }
  setTimeout(() => (button.textContent = label), 1500);
});
document.addEventListener('submit', (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  const message = form.getAttribute('data-confirm');
  if (message && !window.confirm(message)) event.preventDefault();
});
