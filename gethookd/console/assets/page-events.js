// Events: the filtered list of every event.
import { h } from "./dom.js";
import { eventList } from "./eventlist.js";

export async function render(main, { params }) {
  main.append(h("h1", {}, "Events"));
  const list = await eventList(main, params);
  return list.cleanup;
}
