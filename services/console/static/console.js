// Times in the reader's own time zone: the server writes UTC, the browser knows where it is.
// Again after htmx puts new content in (the overview's refresh, a new incident in the list).
function localTimes(root) {
  root.querySelectorAll("time[datetime]:not([data-local])").forEach((element) => {
    const moment = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(moment.getTime())) {
      element.textContent = moment.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      element.dataset.local = "yes";
    }
  });
}

localTimes(document);
document.body.addEventListener("htmx:afterSettle", () => localTimes(document));
