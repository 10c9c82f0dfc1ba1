window.__bmErrors=[];
window.addEventListener('error',function(e){var t=e.target;window.__bmErrors.push(t&&t.tagName?('resource failed: '+
(t.src||t.href||t.tagName)):String(e.message));},true);
(function(){var ce=console.error;console.error=function(){window.__bmErrors.push(Array.prototype.join.call(arguments,' '));
return ce.apply(console,arguments);};})();
