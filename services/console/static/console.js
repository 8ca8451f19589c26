// Times in the reader's own time zone: the server writes UTC, the browser knows where it is.
document.querySelectorAll("time[datetime]").forEach((element) => {
  const moment = new Date(element.getAttribute("datetime"));
  if (!Number.isNaN(moment.getTime())) {
    element.textContent = moment.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
});
