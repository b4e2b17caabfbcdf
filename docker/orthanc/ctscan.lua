-- Orthanc sends each new series, once stable, to the classification service (the DICOMweb
-- server "ctscan" of its configuration); the service routes it to a model by its rules and
-- stores the results (an SR and key-slice captures) back into the same study. The results'
-- own series (Manufacturer "ctscan") are not sent again.
function OnStableSeries(seriesId, tags, metadata)
  if tags['Manufacturer'] == 'ctscan' then
    return
  end
  local ok, answer = pcall(RestApiPost, '/dicom-web/servers/ctscan/stow',
                           DumpJson({ Resources = { seriesId } }, true))
  if not ok then
    print('ctscan: the service did not take series ' .. seriesId)
  end
end
